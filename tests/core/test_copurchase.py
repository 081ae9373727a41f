"""Co-purchase counting: pairs within the window, each shopper once, best first, capped."""

from recsys_core.copurchase import MAX_BASKET, count_co_purchases


def counts(purchases, window=24, keep=10):
    return count_co_purchases(purchases, window, keep=keep)


def test_pairs_within_the_window_count_both_ways():
    found = counts([("ann", "tea", 0), ("ann", "kettle", 5), ("ann", "cups", 40)])
    assert found == {"tea": [("kettle", 1)], "kettle": [("tea", 1)]}  # cups: 35 h after kettle


def test_a_shopper_counts_once_per_pair_and_ties_go_by_id():
    purchases = [("ann", p, t) for t, p in enumerate(["tea", "cups"] * 5)]
    purchases += [("bob", "tea", 0), ("bob", "mugs", 1), ("cat", "tea", 0), ("cat", "mugs", 1)]
    purchases += [("dan", "tea", 0), ("dan", "b-spoon", 1), ("dan", "a-lid", 2)]
    found = counts(purchases)
    assert found["tea"] == [("mugs", 2), ("a-lid", 1), ("b-spoon", 1), ("cups", 1)]
    assert found["cups"] == [("tea", 1)]  # the same product twice is no pair


def test_keep_limits_each_list():
    purchases = [("ann", f"p{i}", i) for i in range(6)]
    assert [other for other, _ in counts(purchases, window=100, keep=3)["p0"]] == ["p1", "p2", "p3"]


def test_a_huge_basket_pairs_each_purchase_with_the_next_max_basket_only():
    purchases = [("reseller", f"p{i:04d}", 0) for i in range(MAX_BASKET + 10)]
    found = counts(purchases, keep=1000)
    assert len(found["p0000"]) == MAX_BASKET
    assert ("p0000", 1) in found[f"p{MAX_BASKET:04d}"]  # the pair is stored both ways


def test_shoppers_are_told_apart_by_their_key():
    found = counts([("ann", "tea", 0), ("bob", "kettle", 1)])
    assert found == {}
