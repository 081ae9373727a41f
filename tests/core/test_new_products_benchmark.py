"""The new-products benchmark's own steps: the shop before its new products, the share of
top-10 slots they take, and a product page's similar list."""

import numpy as np
import torch

from benchmarks.new_products import ProductPageSimilar, _new_share_of_top10, _without
from recsys_core.config import ModelConfig
from recsys_core.data import SequenceData
from recsys_core.inference import Recommender
from recsys_core.model import SeqRecModel


def test_the_shop_before_its_new_products_drops_their_events_and_renumbers_the_rest():
    data = SequenceData(
        item_ids=["a", "b", "c", "d", "e"],
        users=["u1", "u2"],
        sequences=[np.array([1, 2, 3, 5]), np.array([2, 4, 4])],
        kinds=[np.array([1, 2, 1, 1]), np.array([1, 1, 2])],
        item_texts=["ta", "tb", "tc", "td", "te"],
    )
    is_new = np.array([False, False, True, False, False, True])  # "b" and "e"
    before = _without(data, data.sequences, data.kinds, is_new)
    assert before.item_ids == ["a", "c", "d"] and before.item_texts == ["ta", "tc", "td"]
    assert [s.tolist() for s in before.sequences] == [[1, 2], [3, 3]]
    assert [k.tolist() for k in before.kinds] == [[1, 1], [1, 2]]


def test_the_share_of_top10_slots_counts_new_products_after_the_history_is_removed():
    n_items = 20
    is_new = np.zeros(n_items + 1, dtype=bool)
    is_new[[19, 20]] = True

    def newest_first(histories, kinds):  # item i scores i: the two new products come first
        return np.tile(np.arange(n_items + 1, dtype=np.float32), (len(histories), 1))

    histories = [np.array([1]), np.array([20])]  # the second shopper saw one new product
    share = _new_share_of_top10(newest_first, histories, [np.ones(1)] * 2, is_new)
    assert share == (2 + 1) / 20


def test_a_product_page_ranks_as_similar_items_does_and_a_new_product_page_by_text():
    rng = np.random.default_rng(0)
    n_items, n_new, text_dim = 30, 5, 8
    texts = rng.normal(size=(n_items, text_dim)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    item_ids = [f"p{i}" for i in range(1, n_items + 1)]
    n_known = n_items - n_new  # the last five are new: the model was trained without them
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=n_known, d_model=16, n_heads=2, n_layers=1,
                                    text_dim=text_dim), texts[:n_known])
    trained = Recommender(model, item_ids[:n_known])
    page = ProductPageSimilar(trained, item_ids, texts)

    scores = page([np.array([7, 3])], [np.ones(2)])[0]  # the page of p3, a known product
    ranked = [item_ids[i - 1] for i in np.argsort(-scores)[: n_known - 1]]
    assert ranked == [s.item for s in trained.similar_items("p3", k=n_known - 1)]
    assert np.isneginf(scores[[0, 3, *range(n_known + 1, n_items + 1)]]).all()

    scores = page([np.array([n_items])], [np.ones(1)])[0]  # a new product's page: by text
    np.testing.assert_allclose(scores[1 : n_known + 1], texts[:n_known] @ texts[-1], rtol=1e-5)

    placed = trained.with_items(item_ids[n_known:], texts[n_known:])
    scores = ProductPageSimilar(placed, item_ids, texts)([np.array([3])], [np.ones(1)])[0]
    ranked = [item_ids[i - 1] for i in np.argsort(-scores)[: n_items - 1]]
    assert ranked == [s.item for s in placed.similar_items("p3", k=n_items - 1)]
    scores = ProductPageSimilar(placed, item_ids, texts, text_for_unknown=np.isin(
        np.arange(n_items + 1), range(n_known + 1, n_items + 1)))([np.array([n_items])],
                                                                   [np.ones(1)])[0]
    np.testing.assert_allclose(scores[1:n_items], texts[:-1] @ texts[-1], rtol=1e-5)
