"""Search ranking (recsys_core.search): BM25, typo correction, fusion, personal re-ranking,
suggestions and the graded NDCG of the search benchmark, on a small synthetic catalogue."""

import math

import numpy as np
import pytest

from recsys_core.search import (
    DenseIndex,
    HybridSearch,
    KeywordIndex,
    SpellingCorrector,
    Suggester,
    edit_distance,
    fuse,
    graded_ndcg,
    personalise,
    single_threaded,
    stem,
    tokenize,
    top_k,
)
from recsys_core.text import TextEncoder

CATALOGUE = [
    ("Three-seat fabric couch", "A comfortable grey couch for the living room."),
    ("Electric kettle 1.7 l", "Boils water in three minutes, auto shut-off."),
    ("Burr coffee grinder", "Grinds beans for espresso and filter coffee."),
    ("Trail running shoes", "Light shoes with a grippy sole for muddy paths."),
    ("Cast iron frying pan", "Heavy pan that keeps its heat, for searing steak."),
    ("Wool winter scarf", "Warm knitted scarf in navy blue."),
    ("Stainless steel water bottle", "Keeps drinks cold for a day, 750 ml."),
    ("Yoga mat", "Non-slip mat, 6 mm thick, with a carrying strap."),
    ("Acme XR-500 cordless drill", "18 V drill driver with two batteries."),
    ("Ceramic teapot", "Brews loose leaf tea for four cups."),
    ("LED desk lamp", "Dimmable lamp with a USB charging port."),
    ("Kids bicycle helmet", "Adjustable helmet for children aged 5 to 8."),
]
TITLES = [title for title, _ in CATALOGUE]
DOCUMENTS = [f"{title}. {text}" for title, text in CATALOGUE]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def hybrid(encoder: TextEncoder) -> HybridSearch:
    return HybridSearch(DOCUMENTS, encoder.encode(DOCUMENTS), titles=TITLES)


def best(search: HybridSearch, encoder: TextEncoder, query: str) -> str:
    query = search.correct(query).text
    ranked = search.search(query, encoder.encode_query(query), k=3)
    return TITLES[int(ranked.indices[0])]


# --- The whole ranker on a real encoder --------------------------------------------------------


def test_a_query_finds_its_product_by_meaning(hybrid, encoder) -> None:
    # No product uses the word "sofa": only the meaning leads to the couch.
    assert not hybrid.keyword.scores("sofa").any()
    assert best(hybrid, encoder, "sofa") == "Three-seat fabric couch"
    assert best(hybrid, encoder, "something to make tea in") == "Ceramic teapot"


def test_a_query_finds_its_product_by_words(hybrid, encoder) -> None:
    # A model code means nothing to the text encoder; BM25 matches it exactly.
    assert best(hybrid, encoder, "XR-500") == "Acme XR-500 cordless drill"


def test_a_misspelt_query_still_finds_its_product(hybrid, encoder) -> None:
    correction = hybrid.correct("cofee grindr")
    assert correction.changed and correction.text == "coffee grinder"
    assert best(hybrid, encoder, "cofee grindr") == "Burr coffee grinder"
    assert best(hybrid, encoder, "electirc kettel") == "Electric kettle 1.7 l"


def test_words_only_when_there_are_no_embeddings() -> None:
    search = HybridSearch(DOCUMENTS, None, titles=TITLES)
    ranked = search.search("yoga mat", None, k=2)
    assert TITLES[int(ranked.indices[0])] == "Yoga mat"
    assert ranked.scores[0] == pytest.approx(1.0)


def test_a_category_mask_keeps_only_allowed_products(hybrid, encoder) -> None:
    allowed = np.zeros(len(DOCUMENTS), dtype=bool)
    allowed[[1, 9]] = True  # the kettle and the teapot
    ranked = hybrid.search("couch", encoder.encode_query("couch"), k=5, mask=allowed)
    assert sorted(ranked.indices.tolist()) == [1, 9]


# --- Words -------------------------------------------------------------------------------------


def test_stemming_folds_plurals_onto_the_singular() -> None:
    assert [stem(w) for w in ["batteries", "boxes", "watches", "shoes", "jeans", "lamps"]] == [
        "battery", "box", "watch", "shoe", "jean", "lamp"]
    # Words that only look plural, short words and numbers are kept.
    assert [stem(w) for w in ["glass", "tennis", "bus", "gas", "1990s"]] == [
        "glass", "tennis", "bus", "gas", "1990"]
    assert tokenize("Café CRÈME, 2 Mugs!") == ["cafe", "creme", "2", "mug"]


def test_bm25_matches_the_formula_on_a_tiny_corpus() -> None:
    index = KeywordIndex(["red red shoe", "blue shoe", "blue hat"], stemmed=False)
    # "red" occurs in 1 of 3 documents, twice in a document of average length (3 vs 7/3).
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / (7 / 3))
    expected = idf * 2 * 2.2 / (2 + norm)
    scores = index.scores("red")
    assert scores[0] == pytest.approx(expected, rel=1e-5)
    assert scores[1] == scores[2] == 0


def test_bm25_prefers_rare_words_more_matches_and_title_matches() -> None:
    index = KeywordIndex(["blue shoe", "blue hat", "blue scarf", "blue lamp"], stemmed=False)
    scores = index.scores("blue hat")
    assert int(np.argmax(scores)) == 1  # the only document with the rare word
    titled = KeywordIndex(
        ["Lamp. A lamp for a desk", "Desk. A desk with a lamp"],
        titles=["Lamp", "Desk"], title_weight=2,
    )
    scores = titled.scores("lamp")
    assert scores[0] > scores[1] > 0  # same words, but "lamp" is the first one's title


# --- Typos -------------------------------------------------------------------------------------


def test_edit_distance_counts_swaps_as_one_edit() -> None:
    assert edit_distance("kettle", "kettle", 2) == 0
    assert edit_distance("kettel", "kettle", 2) == 1  # adjacent swap
    assert edit_distance("grindr", "grinder", 2) == 1
    assert edit_distance("lamp", "scarf", 2) == 3  # beyond the limit: limit + 1


def test_the_corrector_fixes_unknown_words_only() -> None:
    corrector = SpellingCorrector(KeywordIndex(DOCUMENTS).word_frequency)
    assert corrector.correct_word("helmte") == "helmet"
    assert corrector.correct_word("bycicle") == "bicycle"
    assert corrector.correct_word("helmets") == "helmets"  # a plural of a known word is known
    assert corrector.correct_word("zzzzzz") == "zzzzzz"  # nothing is close: left as typed
    assert corrector.correct_word("tv") == "tv"  # too short to guess
    correction = corrector.correct("Blue scarf")
    assert not correction.changed and correction.text == "Blue scarf"


def test_the_commoner_of_two_equally_close_words_wins() -> None:
    corrector = SpellingCorrector({"lamp": 10, "ramp": 2})
    assert corrector.correct_word("damp") == "lamp"
    assert SpellingCorrector({"lamp": 1, "ramp": 20}).correct_word("damp") == "ramp"


# --- Fusion, personal re-ranking, top-k --------------------------------------------------------


def test_fusion_weights_words_against_meaning() -> None:
    keyword = np.array([9.0, 0.0, 7.0], dtype=np.float32)
    dense = np.array([0.1, 0.9, 0.7], dtype=np.float32)
    assert top_k(fuse(keyword, dense, 1.0), 3).tolist() == [0, 2, 1]
    assert top_k(fuse(keyword, dense, 0.0), 3).tolist() == [1, 2, 0]
    assert top_k(fuse(keyword, dense, 0.5), 1).tolist() == [2]  # good at both
    np.testing.assert_allclose(fuse(keyword, None), [1.0, 0.0, 7 / 9], rtol=1e-6)
    with pytest.raises(ValueError, match="keyword_weight"):
        fuse(keyword, dense, 1.5)
    with pytest.raises(ValueError, match="differ"):
        fuse(keyword, dense[:2])


def test_personalisation_breaks_near_ties_but_does_not_bury_the_best_match() -> None:
    scores = np.array([0.90, 0.88, 0.40], dtype=np.float32)
    likes_second = np.array([0.0, 5.0, 9.0], dtype=np.float32)
    moved = personalise(scores, likes_second, weight=0.15)
    assert top_k(moved, 3).tolist() == [1, 0, 2]  # the near-tie flips, the weak match stays last
    # A product the model does not know counts as the least preferred.
    unknown = np.array([-np.inf, 1.0, 0.0], dtype=np.float32)
    assert top_k(personalise(scores, unknown, 0.15), 1).tolist() == [1]
    np.testing.assert_array_equal(personalise(scores, likes_second, 0.0), scores)


def test_top_k_is_ordered_breaks_ties_by_position_and_honours_the_mask() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.1], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 0, 2]
    assert top_k(scores, 10).tolist() == [1, 0, 2, 3]
    mask = np.array([True, False, False, True])
    assert top_k(scores, 3, mask).tolist() == [0, 3]
    with pytest.raises(ValueError):
        top_k(scores, 0)


def test_a_reduced_dense_index_keeps_the_ranking_of_low_rank_embeddings() -> None:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(6, 48))  # 300 products whose meaning varies in 6 directions
    embeddings = (rng.normal(size=(300, 6)) @ basis + 0.01 * rng.normal(size=(300, 48)))
    full, reduced = DenseIndex(embeddings), DenseIndex(embeddings, dims=8)
    assert reduced.matrix.shape == (300, 8) and reduced.dim == 48
    for query in rng.normal(size=(5, 6)) @ basis:
        assert top_k(reduced.scores(query), 10).tolist() == top_k(full.scores(query), 10).tolist()
    assert DenseIndex(embeddings, dims=64).projection is None  # nothing to reduce


def test_single_threaded_restores_the_thread_count() -> None:
    import torch

    before = torch.get_num_threads()
    with single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_dense_index_is_cosine_similarity() -> None:
    index = DenseIndex(np.array([[3.0, 0.0], [1.0, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(index.scores(np.array([2.0, 0.0])), [1.0, math.sqrt(0.5)],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="dimensions"):
        index.scores(np.ones(3))


# --- Suggestions and the benchmark's metric ----------------------------------------------------


def test_suggestions_put_popular_queries_before_titles() -> None:
    suggester = Suggester(TITLES)
    popular = ["LED strip", "leather belt", "lamp shade", "led  STRIP"]
    assert suggester.suggest("le", 3, popular_queries=popular) == [
        "LED strip", "leather belt", "LED desk lamp"]
    # Titles are found from any word's start; case and repeated spaces do not matter.
    assert suggester.suggest("  COFFEE  gr") == ["Burr coffee grinder"]
    assert suggester.suggest("lamp", popular_queries=popular) == ["lamp shade", "LED desk lamp"]
    assert suggester.suggest("") == [] and suggester.suggest("xyz") == []


def test_graded_ndcg_by_hand() -> None:
    labels = {"a": 4, "b": 3, "c": 1}
    assert graded_ndcg(["a", "b", "c"], labels) == pytest.approx(1.0)
    # gains: a 7, b 3; shown b then a: (3 + 7/log2 3) / (7 + 3/log2 3)
    expected = (3 + 7 / math.log2(3)) / (7 + 3 / math.log2(3))
    # an unjudged product in between gains nothing: (3 + 0 + 7/log2 4) / ideal
    assert graded_ndcg(["b", "x", "a"], labels) == pytest.approx(
        (3 + 7 / 2) / (7 + 3 / math.log2(3)))
    assert graded_ndcg(["b", "a"], labels) == pytest.approx(expected)
    assert graded_ndcg(["c"], {"c": 1}) == 0.0  # nothing relevant to find
