"""Metric functions against cases computed by hand."""

import itertools
import math

import numpy as np
import pytest
import torch

from recsys_core import metrics


def test_ahead_counts_higher_scores_and_ties_count_equal_ones():
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.3, 0.5], [0.0, 0.9, 0.2, 0.2, 0.2]])
    ahead, ties = metrics.target_ranks(scores, torch.tensor([3, 2]))
    # row 0: target 3 (0.3) is below items 2 and 4, tied with none
    # row 1: target 2 (0.2) is below item 1 and tied with items 3 and 4
    assert ahead.tolist() == [2.0, 1.0]
    assert ties.tolist() == [0.0, 2.0]


def test_removed_target_is_unrankable():
    ahead, ties = metrics.target_ranks(torch.tensor([[0.0, -torch.inf, 1.0]]), torch.tensor([1]))
    assert math.isinf(ahead[0]) and ties[0] == 0
    assert metrics.ndcg_at_k(ahead, 10, ties)[0] == 0.0
    assert metrics.reciprocal_rank(ahead, ties)[0] == 0.0


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        metrics.target_ranks(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([2]))


def test_ndcg_recall_precision_f1_mrr_without_ties():
    ahead = np.array([0.0, 1.0, 9.0, 10.0, np.inf])
    np.testing.assert_allclose(
        metrics.ndcg_at_k(ahead, 10), [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0]
    )
    np.testing.assert_array_equal(metrics.recall_at_k(ahead, 10), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(metrics.precision_at_k(ahead, 10), [0.1, 0.1, 0.1, 0, 0])
    # precision 0.1, recall 1 -> F1 = 2 * 0.1 * 1 / 1.1 = 2 / 11
    np.testing.assert_allclose(metrics.f1_at_k(ahead, 10), [2 / 11, 2 / 11, 2 / 11, 0, 0])
    np.testing.assert_allclose(metrics.reciprocal_rank(ahead), [1, 1 / 2, 1 / 10, 1 / 11, 0])


def test_ndcg_cut_off_is_exclusive_at_k():
    assert metrics.ndcg_at_k(np.array([4.0]), 5)[0] == pytest.approx(1 / math.log2(6))
    assert metrics.ndcg_at_k(np.array([5.0]), 5)[0] == 0.0


def test_tied_target_gets_the_mean_over_its_possible_positions():
    # 1 item ahead, 2 tied: the target is at rank 1, 2 or 3 with equal chance
    ahead, ties = np.array([1.0]), np.array([2.0])
    assert metrics.hits_at_k(ahead, 3, ties)[0] == pytest.approx(2 / 3)  # ranks 1, 2 < 3
    expected_ndcg = (1 / math.log2(3) + 1 / math.log2(4)) / 3  # rank 3 is outside the top 3
    assert metrics.ndcg_at_k(ahead, 3, ties)[0] == pytest.approx(expected_ndcg)
    assert metrics.reciprocal_rank(ahead, ties)[0] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert metrics.precision_at_k(ahead, 3, ties)[0] == pytest.approx(2 / 9)


def test_expected_tie_breaking_equals_averaging_every_order_of_the_tied_items():
    scores = torch.tensor([[0.0, 0.7, 0.2, 0.7, 0.7, 0.1, 0.7]])
    target = 3
    ahead, ties = metrics.target_ranks(scores, torch.tensor([target]))
    tied = [1, 3, 4, 6]
    ndcg_per_order = []
    for order in itertools.permutations(tied):
        rank = order.index(target)  # nothing scores above 0.7
        ndcg_per_order.append(1 / math.log2(rank + 2) if rank < 3 else 0.0)
    assert metrics.ndcg_at_k(ahead, 3, ties)[0] == pytest.approx(np.mean(ndcg_per_order))


def test_constant_scores_are_worth_a_random_ranking():
    n_items = 100
    ahead, ties = metrics.target_ranks(torch.zeros((1, n_items)), torch.tensor([7]))
    assert metrics.recall_at_k(ahead, 10, ties)[0] == pytest.approx(10 / n_items)


def test_coverage_counts_distinct_catalogue_items_and_ignores_padding():
    recommended = np.array([[1, 2, 0], [2, 3, 0]])
    assert metrics.catalogue_coverage(recommended, 6) == pytest.approx(3 / 6)
