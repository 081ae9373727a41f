"""Recommender: top-k, exclusions, reasons, batches, similar items, re-ranking, cold items."""

import numpy as np
import pytest
import torch
from seqrec_fixtures import N_CATEGORIES, TEXT_DIM, make_shop

from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import item_counts
from recsys_core.inference import PLACED_SIMILARITY_WEIGHT, Recommender, best_first
from recsys_core.model import score_histories
from recsys_core.training import train

SHOP = make_shop()


@pytest.fixture(scope="module")
def recommender() -> Recommender:
    config = ModelConfig(n_items=SHOP.n_items, d_model=32, n_heads=2, n_layers=1, max_len=10,
                         text_dim=TEXT_DIM, dropout=0.1, id_dropout=0.2)
    result = train(SHOP.split, SHOP.n_items, SHOP.texts, config,
                   TrainConfig(epochs=12, batch_size=32, lr=3e-3, seed=3, num_threads=1))
    counts = item_counts(SHOP.data.sequences, SHOP.n_items)
    return Recommender(result.model, SHOP.data.item_ids, text_model_id="synthetic",
                       item_counts=counts)


def ids(*indices: int) -> list[str]:
    return [SHOP.data.item_ids[i - 1] for i in indices]


def test_recommends_the_next_item_of_the_walk_first(recommender):
    # Category 0 holds items 1..8 in walking order: after 2, 3 comes 4.
    found = recommender.recommend(ids(2, 3), k=5)
    assert len(found) == 5
    assert found[0].item == ids(4)[0]
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_best_first_ranks_highest_first_and_ties_by_position(dtype):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=5000).astype(dtype)
    scores[rng.choice(5000, 1000, replace=False)] = -np.inf  # excluded items
    scores[[10, 20, 4000]] = 9.0  # a three-way tie at the top
    scores[[7, 3000]] = 8.0
    top = best_first(scores, 40)
    expected = sorted(np.flatnonzero(np.isfinite(scores)), key=lambda i: (-scores[i], i))[:40]
    assert list(top) == expected
    assert list(top[:5]) == [10, 20, 4000, 7, 3000]


def test_scores_equal_the_models_own_scores(recommender):
    model = recommender.model
    expected = score_histories(model, model.item_vectors().detach(), [np.array([2, 3])],
                               [np.array([model.config.default_kind] * 2)])[0]
    found = recommender.recommend(ids(2, 3), k=3)
    for scored in found:
        index = recommender.item_ids.index(scored.item) + 1
        assert scored.score == pytest.approx(float(expected[index]), rel=1e-5)


def test_history_exclusions_and_allowed_items_are_respected(recommender):
    history = ids(2, 3)
    assert not {s.item for s in recommender.recommend(history, k=40)} & set(history)
    with_history = recommender.recommend(history, k=40, exclude_history=False)
    assert set(history) <= {s.item for s in with_history}
    excluded = recommender.recommend(history, k=5, exclude=ids(4))
    assert ids(4)[0] not in {s.item for s in excluded}
    allowed = ids(7, 12, 30)
    limited = recommender.recommend(history, k=10, allowed=allowed)
    assert sorted(s.item for s in limited) == sorted(allowed)


def test_unknown_items_and_kinds_in_the_history_are_ignored(recommender):
    plain = recommender.recommend(ids(2, 3), k=5)
    noisy = recommender.recommend(["unknown", *ids(2), "gone", *ids(3)], k=5)
    assert noisy == plain
    with_kinds = recommender.recommend(ids(2, 9, 3), k=5, kinds=["view", "impression", "view"])
    assert [s.item for s in with_kinds] == [
        s.item for s in recommender.recommend(ids(2, 3), k=5, kinds=["view", "view"])
    ]
    with pytest.raises(ValueError, match="2 items but kinds has 1"):
        recommender.recommend(ids(2, 3), kinds=["view"])


def test_empty_history_falls_back_to_popularity(recommender):
    counts = item_counts(SHOP.data.sequences, SHOP.n_items)
    found = recommender.recommend(["nobody-knows-this"], k=3)
    top_counts = np.sort(counts[1:])[::-1][:3]
    assert [counts[recommender.item_ids.index(s.item) + 1] for s in found] == list(top_counts)
    assert all(s.reason_item is None for s in found)


def test_reason_is_the_history_item_with_the_strongest_support(recommender):
    history = ids(2, 13, 27)
    table = recommender.item_vectors()
    history_rows = [recommender.item_ids.index(i) for i in history]
    for scored in recommender.recommend(history, k=5):
        row = recommender.item_ids.index(scored.item)
        support = table[history_rows] @ table[row]
        assert scored.reason_item == history[int(np.argmax(support))]


def test_batch_gives_the_same_lists_as_single_calls(recommender):
    histories = [ids(2, 3), ids(15), [], ids(21, 22, 23, 24)]
    batch = recommender.recommend_batch(histories, k=4, excludes=[ids(4), [], [], []])
    singles = [
        recommender.recommend(histories[0], k=4, exclude=ids(4)),
        *(recommender.recommend(h, k=4) for h in histories[1:]),
    ]
    assert len(batch) == len(singles)
    for got, expected in zip(batch, singles, strict=True):
        assert [s.item for s in got] == [s.item for s in expected]
        assert [s.score for s in got] == pytest.approx([s.score for s in expected], rel=1e-5)


def test_similar_items_stay_in_the_category(recommender):
    item = ids(3)[0]
    similar = recommender.similar_items(item, k=5)
    assert item not in {s.item for s in similar}
    categories = [SHOP.category[recommender.item_ids.index(s.item) + 1] for s in similar]
    assert categories.count(0) >= 4
    assert all(s.reason_item == item for s in similar)
    with pytest.raises(KeyError, match="unknown item"):
        recommender.similar_items("missing")


def _cosine_ranking(recommender, item, exclude=(), allowed=None):
    """Every other item by cosine with `item`, best first, filtered: the reference answer."""
    vectors = recommender.item_vectors()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    item_ids = recommender.item_ids
    position = item_ids.index(item)
    cosines = unit @ unit[position]
    return [(item_ids[j], float(cosines[j])) for j in np.argsort(-cosines, kind="stable")
            if j != position and item_ids[j] not in exclude
            and (allowed is None or item_ids[j] in allowed)]


def test_kept_neighbours_give_what_a_full_pass_gives(recommender):
    odd = set(ids(*range(1, SHOP.n_items + 1, 2)))
    for item, exclude, allowed in ((ids(3)[0], [], None), (ids(3)[0], ids(4, 5), None),
                                   (ids(17)[0], ids(18), None), (ids(17)[0], ["nothing"], None),
                                   (ids(3)[0], ids(5), odd)):
        expected = _cosine_ranking(recommender, item, exclude, allowed)[:6]
        as_ids = recommender.similar_items(item, k=6, exclude=exclude, allowed=allowed)
        as_mask = recommender.similar_items(
            item, k=6, exclude=exclude,
            allowed=None if allowed is None else recommender.item_mask(allowed),
        )
        for found in (as_ids, as_mask):
            assert [s.item for s in found] == [item for item, _ in expected]
            assert [s.score for s in found] == pytest.approx([c for _, c in expected], rel=1e-5)


def test_an_allowed_mask_is_answered_from_the_kept_neighbours_while_enough_remain(
    recommender, monkeypatch
):
    import recsys_core.inference as inference

    monkeypatch.setattr(inference, "NEIGHBOURS", 6)
    small = Recommender(recommender.model, SHOP.data.item_ids)
    item = ids(3)[0]
    kept = [s.item for s in small.similar_items(item, k=6)]
    passes = []
    full_pass = small._similarities
    monkeypatch.setattr(small, "_similarities",
                        lambda index: passes.append(index) or full_pass(index))
    # Five of the six kept neighbours allowed: enough for k=5, from the kept list.
    found = small.similar_items(item, k=5, allowed=small.item_mask(set(small.item_ids) - {kept[2]}))
    assert not passes and [s.item for s in found] == kept[:2] + kept[3:]
    # Only items outside the kept neighbours allowed: the whole catalogue is ranked again.
    outside = set(small.item_ids) - set(kept) - {item}
    found = small.similar_items(item, k=3, allowed=small.item_mask(outside))
    assert passes
    expected = _cosine_ranking(small, item, allowed=outside)[:3]
    assert [s.item for s in found] == [i for i, _ in expected]


def test_a_mask_of_the_wrong_shape_is_refused(recommender):
    with pytest.raises(ValueError, match="allowed mask"):
        recommender.recommend(ids(2, 3), k=3, allowed=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="allowed mask"):
        recommender.similar_items(ids(2)[0], k=3, allowed=np.ones(SHOP.n_items, dtype=int))


def test_asking_beyond_the_kept_neighbours_makes_a_full_pass(recommender, monkeypatch):
    import recsys_core.inference as inference

    monkeypatch.setattr(inference, "NEIGHBOURS", 4)
    small = Recommender(recommender.model, SHOP.data.item_ids)
    item = ids(3)[0]
    nearest = [s.item for s in small.similar_items(item, k=4)]
    assert len(nearest) == 4
    # Excluding the four kept neighbours still gives three items: the next ones in order.
    beyond = small.similar_items(item, k=3, exclude=nearest)
    full = small.similar_items(item, k=7, allowed=small.item_ids)
    assert [s.item for s in beyond] == [s.item for s in full][4:]
    assert len(small.similar_items(item, k=10)) == 10


def test_items_like_text_rank_by_text_embedding_with_exclusions_and_allowed(recommender):
    texts = recommender.text_embeddings
    query = texts[2] + 0.5 * texts[30]  # item 3's text (row 2), a little of item 31's
    order = np.argsort(-(texts @ query), kind="stable")
    odd = set(ids(*range(1, SHOP.n_items + 1, 2)))
    for exclude, allowed in (([], None), (ids(3, 4), None), (ids(3), odd)):
        expected = [recommender.item_ids[j] for j in order
                    if recommender.item_ids[j] not in exclude
                    and (allowed is None or recommender.item_ids[j] in allowed)][:7]
        for given in (allowed, None if allowed is None else recommender.item_mask(allowed)):
            found = recommender.items_like_text(query, 7, exclude=exclude, allowed=given)
            assert [s.item for s in found] == expected
            assert [s.score for s in found] == pytest.approx(
                [float(texts[recommender.item_ids.index(s.item)] @ query) for s in found],
                rel=1e-5)
            assert all(s.reason_item is None for s in found)
    assert recommender.items_like_text(query, 5, allowed=[]) == []
    with pytest.raises(ValueError, match="shape"):
        recommender.items_like_text(np.zeros(TEXT_DIM + 1, np.float32))
    with pytest.raises(ValueError, match="k must be"):
        recommender.items_like_text(query, 0)


def test_a_model_without_text_embeddings_cannot_rank_by_text():
    config = ModelConfig(n_items=SHOP.n_items, d_model=16, n_heads=1, n_layers=1, use_text=False)
    from recsys_core.model import SeqRecModel

    plain = Recommender(SeqRecModel(config), SHOP.data.item_ids)
    assert not plain.has_text and plain.text_embeddings is None
    with pytest.raises(ValueError, match="no text embeddings"):
        plain.items_like_text(np.zeros(TEXT_DIM, np.float32))


def test_score_rerank_matches_recommend_and_marks_unknown_candidates(recommender):
    history = ids(2, 3)
    top = recommender.recommend(history, k=3)
    scores = recommender.score(history, [s.item for s in top] + ["missing"])
    assert scores[:3] == pytest.approx([s.score for s in top], rel=1e-5)
    assert scores[3] == -np.inf


def test_score_all_is_every_item_in_item_id_order_and_positions_find_them(recommender):
    history = ids(2, 3)
    every = recommender.score_all(history)
    assert every.shape == (len(recommender.item_ids),)
    np.testing.assert_allclose(every, recommender.score(history, recommender.item_ids), rtol=1e-6)
    wanted = ids(7, 1, 40)
    positions = recommender.positions([*wanted, "missing"])
    assert [recommender.item_ids[p] for p in positions] == wanted
    np.testing.assert_allclose(every[positions], recommender.score(history, wanted), rtol=1e-6)
    # A history the model does not know scores every item by its training popularity.
    np.testing.assert_allclose(recommender.score_all(["missing"]),
                               recommender.score(["missing"], recommender.item_ids))


def test_cold_items_are_scored_by_their_text(recommender):
    # Cold items never occur in training; only their text tells their category.
    cold_category = SHOP.category[SHOP.cold]
    for category in range(N_CATEGORIES):
        history = ids(category * 10 + 1, category * 10 + 2)
        scores = recommender.score(history, ids(*SHOP.cold))
        same, other = cold_category == category, cold_category != category
        assert scores[same].mean() > scores[other].mean()


def test_added_products_are_placed_by_text_alone(recommender):
    rng = np.random.default_rng(5)
    texts = 0.3 * rng.normal(size=(N_CATEGORIES, TEXT_DIM)).astype(np.float32)
    texts[np.arange(N_CATEGORIES), np.arange(N_CATEGORIES)] += 1.0
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    new = [f"new-{c}" for c in range(N_CATEGORIES)]
    before = len(recommender.item_ids)
    recommender.similar_items(ids(1)[0], k=3)  # its neighbours kept from before
    extended = recommender.with_items(new, texts)
    assert extended.item_ids[before:] == new
    neighbours = extended.similar_items(ids(1)[0], k=len(extended.item_ids) - 1)
    assert set(new) <= {s.item for s in neighbours}  # its own kept lists
    vectors = extended.item_vectors()[before:]
    with torch.inference_mode():
        expected = extended.model.project_text(torch.from_numpy(texts)).numpy()
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(extended.text_embeddings[before:], texts)
    found = extended.items_like_text(texts[2], k=1)
    assert found[0].item == new[2]
    for category, item in enumerate(new):
        history = ids(category * 10 + 1, category * 10 + 2)
        scores = extended.score(history, new)
        assert int(np.argmax(scores)) == category
        assert item in {s.item for s in extended.recommend(history, k=40)}
    with pytest.raises(ValueError, match="already in the catalogue"):
        extended.with_items(new[:1], texts[:1])
    with pytest.raises(ValueError, match="shape"):
        extended.with_items(["other"], texts[:2])


def test_a_boost_scales_the_placed_products_and_lifts_them_in_lists(recommender):
    texts = np.eye(N_CATEGORIES, TEXT_DIM, dtype=np.float32)
    new = [f"new-{c}" for c in range(N_CATEGORIES)]
    before = len(recommender.item_ids)
    plain = recommender.with_items(new, texts)
    boosted = recommender.with_items(new, texts, boost=3.0)
    np.testing.assert_allclose(boosted.item_vectors()[before:],
                               3.0 * plain.item_vectors()[before:], rtol=1e-6)
    np.testing.assert_array_equal(boosted.item_vectors()[:before], plain.item_vectors()[:before])
    lifted = 0
    for category, item in enumerate(new):
        history = ids(category * 10 + 1, category * 10 + 2)
        np.testing.assert_allclose(boosted.score(history, new), 3.0 * plain.score(history, new),
                                   rtol=1e-5, atol=1e-6)
        ranked = [[s.item for s in r.recommend(history, k=before)] for r in (plain, boosted)]
        assert ranked[1].index(item) <= ranked[0].index(item)
        lifted += ranked[1].index(item) < ranked[0].index(item)
    assert lifted
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="boost must be > 0"):
            recommender.with_items(new, texts, boost=bad)


def test_placed_products_count_a_share_of_their_similarity_and_list_by_their_text(recommender):
    texts = np.eye(N_CATEGORIES, TEXT_DIM, dtype=np.float32)
    new = [f"new-{c}" for c in range(N_CATEGORIES)]
    whole = recommender.with_items(new, texts, similarity_weight=1.0)
    half = recommender.with_items(new, texts, similarity_weight=0.5)
    everything = len(whole.item_ids) - 1
    for similar in (lambda r: r.similar_items(ids(1)[0], k=everything),
                    lambda r: r.items_like_text(texts[0], k=everything)):
        undamped = {s.item: s.score for s in similar(whole)}
        damped = {s.item: s.score for s in similar(half)}
        assert damped.keys() == undamped.keys() and set(new) <= damped.keys()
        for item, score in undamped.items():
            assert damped[item] == pytest.approx(score * (0.5 if item in new else 1.0), abs=1e-6)
    # A placed product's vector is a guess from its text: its own list is its text neighbours.
    for placed in (whole, half):
        own = placed.similar_items(new[2], k=6)
        like_text = placed.items_like_text(texts[2], k=6, exclude=[new[2]])
        assert [(s.item, s.score) for s in own] == [(s.item, s.score) for s in like_text]
        assert all(s.reason_item == new[2] for s in own)
        assert placed.has_text and len(placed._text) == 2  # the catalogue's texts not copied
    default = recommender.with_items(new, texts)
    scores = {s.item: s.score for s in default.items_like_text(texts[1], k=everything)}
    assert scores["new-1"] == pytest.approx(PLACED_SIMILARITY_WEIGHT)  # its own text: cosine 1
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="similarity_weight must be > 0"):
            recommender.with_items(new, texts, similarity_weight=bad)


def test_placing_products_leaves_the_recommender_it_came_from_as_it_was(recommender):
    history = ids(1, 2)
    lists = recommender.recommend(history, k=10), recommender.similar_items(ids(1)[0], k=5)
    vectors, text = recommender.item_vectors(), recommender.text_embeddings.copy()
    texts = np.eye(N_CATEGORIES, TEXT_DIM, dtype=np.float32)
    extended = recommender.with_items([f"new-{c}" for c in range(N_CATEGORIES)], texts)
    assert len(extended.item_ids) == len(recommender.item_ids) + N_CATEGORIES
    assert "new-0" not in recommender.item_ids
    with pytest.raises(KeyError):
        recommender.similar_items("new-0")
    assert (recommender.recommend(history, k=10), recommender.similar_items(ids(1)[0], k=5)) \
        == lists
    np.testing.assert_array_equal(recommender.item_vectors(), vectors)
    np.testing.assert_array_equal(recommender.text_embeddings, text)


def test_text_match_places_a_new_product_next_to_the_latest_items_text():
    config = ModelConfig(n_items=SHOP.n_items, d_model=16, n_heads=1, n_layers=1, max_len=10,
                         text_dim=TEXT_DIM, text_match_dim=8)
    torch.manual_seed(0)
    from recsys_core.model import SeqRecModel

    model = SeqRecModel(config, SHOP.texts)
    with torch.no_grad():
        model.text_match_weight.fill_(1000.0)  # let the text channel decide
    twin = SHOP.texts[2] + 0.01  # a new product whose text is item 3's (p3)
    recommender = Recommender(model, SHOP.data.item_ids).with_items(
        ["twin"], twin[None, :] / np.linalg.norm(twin))
    found = recommender.recommend(ids(7, 3), k=1)
    assert found[0].item == "twin"


def test_text_match_scores_equal_the_models_own_scores():
    from recsys_core.model import SeqRecModel

    config = ModelConfig(n_items=SHOP.n_items, d_model=16, n_heads=1, n_layers=1, max_len=10,
                         text_dim=TEXT_DIM, text_match_dim=8)
    torch.manual_seed(0)
    model = SeqRecModel(config, SHOP.texts).eval()
    model.set_item_counts(item_counts(SHOP.data.sequences, SHOP.n_items))
    with torch.no_grad():  # a distinct weight per popularity bucket, large enough to matter
        model.text_match_weight.copy_(torch.linspace(5.0, -3.0, len(model.text_match_weight)))
    assert len(set(model.item_bucket[1:].tolist())) > 1
    histories = [np.array([7, 3]), np.array([12]), np.array([2, 30, 5])]
    expected = score_histories(model, model.item_vectors().detach(), histories, None)
    recommender = Recommender(model, SHOP.data.item_ids)
    for history, row in zip(histories, expected, strict=True):
        found = recommender.score_all([SHOP.data.item_ids[i - 1] for i in history])
        np.testing.assert_allclose(found, row[1:].numpy(), rtol=1e-5, atol=1e-5)


def test_text_prior_adds_text_similarity_on_the_rows_own_scale():
    from dataclasses import replace

    from recsys_core.model import SeqRecModel

    config = ModelConfig(n_items=SHOP.n_items, d_model=16, n_heads=1, n_layers=1, max_len=10,
                         text_dim=TEXT_DIM, text_match_dim=8)
    torch.manual_seed(0)
    model = SeqRecModel(config, SHOP.texts)
    history = ids(7, 3)
    plain = Recommender(model, SHOP.data.item_ids).score(history, SHOP.data.item_ids)
    model.config = replace(config, text_prior=2.0)
    boosted = Recommender(model, SHOP.data.item_ids).score(history, SHOP.data.item_ids)
    codes = model.text_codes[1:].numpy()
    similarity = codes @ codes[2]  # the latest item is 3
    expected = plain + 2.0 * plain.std(ddof=1) * similarity
    np.testing.assert_allclose(boosted, expected, rtol=1e-4, atol=1e-4)


def test_id_only_model_cannot_place_new_items():
    config = ModelConfig(n_items=SHOP.n_items, d_model=16, n_heads=1, n_layers=1, use_text=False)
    torch.manual_seed(0)
    from recsys_core.model import SeqRecModel

    plain = Recommender(SeqRecModel(config), SHOP.data.item_ids)
    with pytest.raises(ValueError, match="without text"):
        plain.with_items(["x"], np.zeros((1, TEXT_DIM), np.float32))


def test_as_score_fn_maps_another_catalogue(recommender):
    # The same items in reverse order plus one the model does not know.
    other_ids = [*reversed(SHOP.data.item_ids), "foreign"]
    position = {item: i + 1 for i, item in enumerate(other_ids)}
    score_fn = recommender.as_score_fn(other_ids)
    history = np.array([position[i] for i in ids(2, 3)])
    scores = score_fn([history], [np.array([1, 1])])
    assert scores.shape == (1, len(other_ids) + 1)
    assert scores[0, position["foreign"]] == -np.inf
    direct = recommender.score(ids(2, 3), ids(4, 9), kinds=["view", "view"])
    assert scores[0, [position[i] for i in ids(4, 9)]] == pytest.approx(direct, rel=1e-5)
