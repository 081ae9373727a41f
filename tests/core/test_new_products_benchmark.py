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


def test_a_product_page_lists_what_similar_items_lists_and_an_unknown_products_page_its_text():
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
    placed = trained.with_items(item_ids[n_known:], texts[n_known:])

    def page(recommender: Recommender, last: int) -> list[tuple[str, float]]:
        scores = ProductPageSimilar(recommender, item_ids, texts)([np.array([7, last])],
                                                                  [np.ones(2)])[0]
        listed = np.flatnonzero(np.isfinite(scores))
        listed = listed[np.argsort(-scores[listed], kind="stable")]
        return [(item_ids[column - 1], float(scores[column])) for column in listed]

    for recommender, last in ((trained, 3), (placed, 3), (placed, n_items)):
        found = recommender.similar_items(item_ids[last - 1], k=n_items)
        listed = page(recommender, last)
        assert [item for item, _ in listed] == [s.item for s in found]
        np.testing.assert_allclose([score for _, score in listed], [s.score for s in found],
                                   rtol=1e-6)
    assert len(page(placed, 3)) == n_items - 1
    # The trained model does not know p30: its page lists the known products by their text.
    by_text = np.argsort(-(texts[:n_known] @ texts[-1]))
    assert [item for item, _ in page(trained, n_items)] == [item_ids[i] for i in by_text]
