"""Metric functions against cases computed by hand."""

import math

import numpy as np
import pytest
import torch

from recsys_core import metrics


def test_rank_counts_items_scored_higher_and_ties_against_the_target():
    scores = torch.tensor([[0.0, 0.1, 0.5, 0.3, 0.5], [0.0, 0.9, 0.2, 0.2, 0.2]])
    # row 0: target 3 (0.3) is below items 2 and 4 -> rank 2
    # row 1: target 2 (0.2) ties with 3 and 4, below 1 -> rank 3 (ties count against it)
    ranks = metrics.target_ranks(scores, torch.tensor([3, 2]))
    assert ranks.tolist() == [2.0, 3.0]


def test_constant_scores_give_no_free_hit():
    scores = torch.zeros((1, 101))
    assert metrics.target_ranks(scores, torch.tensor([1])).item() == 100.0


def test_removed_target_is_unrankable():
    scores = torch.tensor([[0.0, -torch.inf, 1.0]])
    assert math.isinf(metrics.target_ranks(scores, torch.tensor([1])).item())


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        metrics.target_ranks(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([2]))


def test_ndcg_recall_precision_f1_mrr_by_hand():
    ranks = np.array([0.0, 1.0, 9.0, 10.0, np.inf])
    np.testing.assert_allclose(
        metrics.ndcg_at_k(ranks, 10), [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0]
    )
    np.testing.assert_array_equal(metrics.recall_at_k(ranks, 10), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(metrics.precision_at_k(ranks, 10), [0.1, 0.1, 0.1, 0, 0])
    # precision 0.1, recall 1 -> F1 = 2 * 0.1 * 1 / 1.1 = 2 / 11
    np.testing.assert_allclose(metrics.f1_at_k(ranks, 10), [2 / 11, 2 / 11, 2 / 11, 0, 0])
    np.testing.assert_allclose(metrics.reciprocal_rank(ranks), [1, 1 / 2, 1 / 10, 1 / 11, 0])


def test_ndcg_cut_off_is_exclusive_at_k():
    assert metrics.ndcg_at_k(np.array([4.0]), 5)[0] == pytest.approx(1 / math.log2(6))
    assert metrics.ndcg_at_k(np.array([5.0]), 5)[0] == 0.0


def test_coverage_counts_distinct_catalogue_items_and_ignores_padding():
    recommended = np.array([[1, 2, 0], [2, 3, 0]])
    assert metrics.catalogue_coverage(recommended, 6) == pytest.approx(3 / 6)
