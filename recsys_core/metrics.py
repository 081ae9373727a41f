"""Ranking metrics for next-item prediction with one held-out target per case.

Every function takes the target's 0-based rank among all candidate items (`inf` when the
target could not be ranked, e.g. it was removed as a history item) and returns one value per
case, so that the evaluator can average over all cases or over any slice of them.
"""

from __future__ import annotations

import numpy as np
import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target; ties count against the target.

    Counting tied items as ranked above the target means a model that gives many items the
    same score (a constant scorer, an all-zero kNN row) earns no hits by luck of the item
    order. A target scored -inf (removed from the ranking) gets rank inf.
    """
    if scores.dim() != 2 or targets.dim() != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} "
                         "must be [B, n] and [B]")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked")
    target_scores = scores.gather(1, targets.unsqueeze(1))
    ranks = (scores >= target_scores).sum(dim=1).to(torch.float64) - 1.0
    return torch.where(torch.isneginf(target_scores.squeeze(1)), torch.inf, ranks)


def hits_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the target is in the top k."""
    return (np.asarray(ranks) < k).astype(np.float64)


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """With one relevant item per case, Recall@K equals HR@K."""
    return hits_at_k(ranks, k)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """1 / log2(rank + 2) inside the top k, else 0 (the ideal DCG of one target is 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    inside = ranks < k
    gains = np.zeros_like(ranks)
    gains[inside] = 1.0 / np.log2(ranks[inside] + 2.0)
    return gains


def precision_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Share of the k shown items that is the target: hit / k."""
    return hits_at_k(ranks, k) / k


def f1_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Harmonic mean of precision (hit/k) and recall (hit) per case: 2·hit / (k + 1)."""
    return 2.0 * hits_at_k(ranks, k) / (k + 1)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    """1 / (rank + 1); an unrankable target (inf) gives 0."""
    return 1.0 / (np.asarray(ranks, dtype=np.float64) + 1.0)


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the n_items catalogue items that appear in at least one recommendation list."""
    if n_items < 1:
        raise ValueError("n_items must be positive")
    items = np.unique(np.asarray(recommended).ravel())
    return float(np.count_nonzero((items >= 1) & (items <= n_items))) / n_items
