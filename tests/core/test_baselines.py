"""Popularity, item-kNN and the text nearest-neighbour baseline, through the one evaluator."""

import numpy as np
import pytest

from recsys_core.baselines import ItemKNN, LastItemTextModel, PopularityModel
from recsys_core.evaluation import evaluate


def arrays(*sequences):
    return [np.array(sequence, dtype=np.int64) for sequence in sequences]


def test_popularity_scores_are_interaction_counts():
    model = PopularityModel().fit(arrays([1, 2, 2], [2, 3]), n_items=4)
    scores = model(arrays([1], [3]), arrays([1], [1]))
    assert scores.shape == (2, 5)
    assert scores[0].tolist() == [0, 1, 3, 1, 0]
    assert scores[1].tolist() == scores[0].tolist()


def test_item_knn_cosine_by_hand():
    # users(1)=2, users(2)=2, users(3)=2, users(4)=1; together(1,2)=2, (1,3)=1, (3,4)=1
    model = ItemKNN().fit(arrays([1, 2], [1, 2, 3], [3, 4]), n_items=5)
    scores = model(arrays([1], [3, 4]), arrays([1], [1, 1]))
    assert scores[0, 2] == pytest.approx(2 / 2, abs=1e-5)
    assert scores[0, 3] == pytest.approx(1 / 2, abs=1e-5)
    assert scores[0, 4] == pytest.approx(0.0, abs=1e-5)
    # history [3, 4]: item 1 gets sim(3,1) = 1/2; item 4 gets sim(3,4) = 1/sqrt(2)
    assert scores[1, 1] == pytest.approx(1 / 2, abs=1e-5)
    assert scores[1, 4] == pytest.approx(1 / np.sqrt(2), abs=1e-5)


def test_item_knn_matches_a_dense_reference_on_random_data():
    rng = np.random.default_rng(3)
    n_items = 30
    train = [rng.integers(1, n_items + 1, size=rng.integers(1, 8)) for _ in range(60)]
    users = np.zeros((len(train), n_items + 1))
    for row, sequence in enumerate(train):
        users[row, sequence] = 1
    together = users.T @ users
    norms = np.sqrt(np.outer(users.sum(0), users.sum(0)))
    similarity = np.divide(together, norms, out=np.zeros_like(together), where=norms > 0)
    np.fill_diagonal(similarity, 0)
    histories = [rng.integers(1, n_items + 1, size=rng.integers(0, 5)) for _ in range(9)]
    expected = np.stack([similarity[history].sum(0) for history in histories])
    scores = ItemKNN().fit(train, n_items)(histories, [np.ones_like(h) for h in histories])
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_item_knn_orders_items_without_evidence_by_popularity():
    model = ItemKNN().fit(arrays([1, 2], [3], [3], [3]), n_items=4)
    scores = model(arrays([4]), arrays([1]))  # item 4 was never seen: no neighbours
    assert np.argmax(scores[0, 1:]) + 1 == 3


def test_item_knn_beats_popularity_on_data_with_item_to_item_structure():
    rng = np.random.default_rng(0)
    n_items = 60
    # each user shops in one of six "aisles" of ten items; one aisle is slightly more popular
    sequences = []
    for _ in range(300):
        aisle = 0 if rng.random() < 0.3 else rng.integers(1, 6)
        sequences.append(rng.choice(np.arange(1, 11) + 10 * aisle, size=5, replace=False))
    histories = [sequence[:-1] for sequence in sequences]
    targets = np.array([sequence[-1] for sequence in sequences])
    kinds = [np.ones(len(h), dtype=np.int64) for h in histories]
    popularity = PopularityModel().fit(histories, n_items)
    knn = ItemKNN().fit(histories, n_items)
    pop_ndcg = evaluate(popularity, histories, kinds, targets, n_items).metrics["ndcg@10"]
    knn_ndcg = evaluate(knn, histories, kinds, targets, n_items).metrics["ndcg@10"]
    assert knn_ndcg > 2 * pop_ndcg


def test_last_item_text_model_scores_by_cosine_to_the_last_item():
    embeddings = np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    model = LastItemTextModel(embeddings)
    scores = model(arrays([3, 1]), arrays([1, 1]))
    np.testing.assert_allclose(scores[0], [0, 1, 0.8, 0])


@pytest.mark.parametrize("model", [PopularityModel(), ItemKNN()])
def test_scoring_before_fit_is_an_error(model):
    with pytest.raises(RuntimeError, match="fitted"):
        model(arrays([1]), arrays([1]))
