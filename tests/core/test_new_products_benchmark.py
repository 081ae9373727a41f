"""The new-products benchmark's own steps: the shop before its new products, and the share of
top-10 slots they take."""

import numpy as np

from benchmarks.new_products import _new_share_of_top10, _without
from recsys_core.data import SequenceData


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
