"""The one evaluator: full ranking, history removal, batching, slices, bad input."""

import math

import numpy as np
import pytest
import torch

from recsys_core.evaluation import COLD_THRESHOLD, evaluate

N_ITEMS = 5
# item scores shared by every user: item 5 best, then 4, 3, 2, 1
FIXED = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)


def fixed_scores(histories, kinds):
    return np.tile(FIXED, (len(histories), 1))


def cases():
    histories = [np.array([5]), np.array([1, 2]), np.array([4, 5, 3])]
    kinds = [np.ones(len(history), dtype=np.int64) for history in histories]
    targets = np.array([4, 3, 1])
    return histories, kinds, targets


def test_history_is_removed_before_ranking():
    histories, kinds, targets = cases()
    report = evaluate(fixed_scores, histories, kinds, targets, N_ITEMS, ks=(1, 2))
    # user 0: 5 removed -> 4 ranks 0; user 1: 3 ranks 2 (behind 5, 4);
    # user 2: 4, 5, 3 removed -> ranking 2, 1: target 1 ranks 1
    expected_ndcg2 = (1.0 + 0.0 + 1 / math.log2(3)) / 3
    assert report.metrics["recall@1"] == pytest.approx(1 / 3)
    assert report.metrics["recall@2"] == pytest.approx(2 / 3)
    assert report.metrics["ndcg@2"] == pytest.approx(expected_ndcg2)
    assert report.metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert report.metrics["precision@2"] == pytest.approx(2 / 3 / 2)
    assert report.n_cases == 3


def test_without_history_removal_seen_items_stay_in_the_ranking():
    histories, kinds, targets = cases()
    report = evaluate(fixed_scores, histories, kinds, targets, N_ITEMS, ks=(1,),
                      exclude_history=False)
    # ranks: user 0 target 4 behind 5 -> 1; user 1 target 3 -> 2; user 2 target 1 -> 4
    assert report.metrics["recall@1"] == 0.0
    assert report.metrics["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 5) / 3)


def test_a_target_already_in_the_history_is_a_miss():
    report = evaluate(fixed_scores, [np.array([5, 2])], [np.array([1, 1])], np.array([5]),
                      N_ITEMS, ks=(5,))
    assert report.metrics["recall@5"] == 0.0
    assert report.metrics["mrr"] == 0.0


def test_batch_size_does_not_change_results():
    rng = np.random.default_rng(0)
    n_items = 40
    table = rng.normal(size=(n_items + 1, n_items + 1)).astype(np.float32)

    def last_item_scores(histories, kinds):
        return table[[history[-1] for history in histories]]

    histories = [rng.choice(np.arange(1, n_items + 1), size=rng.integers(1, 6), replace=False)
                 for _ in range(23)]
    kinds = [np.ones(len(history), dtype=np.int64) for history in histories]
    targets = rng.integers(1, n_items + 1, size=23)
    one = evaluate(last_item_scores, histories, kinds, targets, n_items, batch_size=1)
    many = evaluate(last_item_scores, histories, kinds, targets, n_items, batch_size=7)
    assert one.metrics == pytest.approx(many.metrics)


def test_torch_scores_are_accepted_and_the_models_array_is_not_modified():
    histories, kinds, targets = cases()
    shared = torch.tensor(np.tile(FIXED, (3, 1)))
    report = evaluate(lambda h, k: shared, histories, kinds, targets, N_ITEMS, ks=(2,))
    assert report.metrics["recall@2"] == pytest.approx(2 / 3)
    assert torch.isfinite(shared).all()


def test_coverage_counts_items_shown_in_any_top_k():
    histories, kinds, targets = cases()
    report = evaluate(fixed_scores, histories, kinds, targets, N_ITEMS, ks=(1,))
    # top-1 lists: user 0 -> 4, user 1 -> 5, user 2 -> 2
    assert report.metrics["coverage@1"] == pytest.approx(3 / N_ITEMS)


def test_slices_by_history_length_and_target_popularity():
    histories, kinds, targets = cases()
    counts = np.zeros(N_ITEMS + 1, dtype=np.int64)
    counts[4] = COLD_THRESHOLD  # not cold
    counts[3] = COLD_THRESHOLD - 1  # cold
    counts[1] = 0  # cold
    report = evaluate(fixed_scores, histories, kinds, targets, N_ITEMS, ks=(1,),
                      train_item_counts=counts)
    assert report.slices["short_history(<=3)"]["n_cases"] == 3
    assert report.slices["long_history(>10)"] == {"n_cases": 0}
    cold = report.slices["cold_target"]
    assert cold["n_cases"] == 2  # targets 3 and 1: both missed at 1
    assert cold["recall@1"] == 0.0
    assert report.slices["head_target"]["n_cases"] == 1  # the top 20% of 5 items = item 4
    assert report.slices["head_target"]["recall@1"] == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, k, t: (h, k, np.array([4, 3, 6])), "targets"),
        (lambda h, k, t: (h[:2], k, t), "one entry per case"),
        (lambda h, k, t: ([], [], np.array([], dtype=np.int64)), "no cases"),
    ],
)
def test_bad_cases_are_refused(change, message):
    histories, kinds, targets = change(*cases())
    with pytest.raises(ValueError, match=message):
        evaluate(fixed_scores, histories, kinds, targets, N_ITEMS)


def test_a_score_function_of_the_wrong_shape_is_refused():
    histories, kinds, targets = cases()
    with pytest.raises(ValueError, match=r"expected \(3, 6\)"):
        evaluate(lambda h, k: np.zeros((len(h), N_ITEMS)), histories, kinds, targets, N_ITEMS)


def test_to_dict_is_plain_json_material():
    import json

    histories, kinds, targets = cases()
    report = evaluate(fixed_scores, histories, kinds, targets, N_ITEMS,
                      train_item_counts=np.ones(N_ITEMS + 1, dtype=np.int64))
    assert json.loads(json.dumps(report.to_dict()))["n_cases"] == 3
