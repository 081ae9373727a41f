"""Ranking metrics for next-item prediction with one held-out target per case.

A case is described by `ahead`, the number of candidates scored strictly above the target
(`inf` when the target could not be ranked, e.g. it was removed as a history item), and `ties`,
the number of other candidates with exactly the target's score. Ties are broken uniformly at
random *in expectation*: a metric is averaged over the ties + 1 positions the target could
take. So a constant scorer is worth a random ranking, no more (breaking ties by item index
would hand it hits whenever targets have low indices) and no less (counting ties against the
target would punish legitimately equal scores such as popularity counts), and results are
deterministic. Every function returns one value per case, so the evaluator can average over
all cases or over any slice of them.
"""

from __future__ import annotations

import numpy as np
import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(ahead, ties) of each row's target among that row's scores; see the module docstring."""
    if scores.dim() != 2 or targets.dim() != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} "
                         "must be [B, n] and [B]")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked")
    target_scores = scores.gather(1, targets.unsqueeze(1))
    ahead = (scores > target_scores).sum(dim=1).to(torch.float64)
    ties = (scores == target_scores).sum(dim=1).to(torch.float64) - 1.0
    removed = torch.isneginf(target_scores.squeeze(1))
    ahead = torch.where(removed, torch.inf, ahead)
    ties = torch.where(removed, 0.0, ties)
    return ahead.numpy(), ties.numpy()


def hits_at_k(ahead: np.ndarray, k: int, ties: np.ndarray | None = None) -> np.ndarray:
    """Probability that the target is in the top k: share of its possible positions below k."""
    ahead, ties = _cases(ahead, ties)
    return np.clip(k - ahead, 0.0, ties + 1.0) / (ties + 1.0)


def recall_at_k(ahead: np.ndarray, k: int, ties: np.ndarray | None = None) -> np.ndarray:
    """With one relevant item per case, Recall@K equals HR@K."""
    return hits_at_k(ahead, k, ties)


def ndcg_at_k(ahead: np.ndarray, k: int, ties: np.ndarray | None = None) -> np.ndarray:
    """1 / log2(rank + 2) inside the top k, else 0 (the ideal DCG of one target is 1)."""
    ahead, ties = _cases(ahead, ties)
    # cumulative[r] = sum of the gains of ranks 0 .. r-1
    cumulative = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))))
    first = np.minimum(ahead, k).astype(np.int64)
    last = np.minimum(ahead + ties + 1.0, k).astype(np.int64)
    return (cumulative[last] - cumulative[first]) / (ties + 1.0)


def precision_at_k(ahead: np.ndarray, k: int, ties: np.ndarray | None = None) -> np.ndarray:
    """Share of the k shown items that is the target: hit / k."""
    return hits_at_k(ahead, k, ties) / k


def f1_at_k(ahead: np.ndarray, k: int, ties: np.ndarray | None = None) -> np.ndarray:
    """Harmonic mean of precision (hit/k) and recall (hit) per case: 2·hit / (k + 1)."""
    return 2.0 * hits_at_k(ahead, k, ties) / (k + 1)


def reciprocal_rank(ahead: np.ndarray, ties: np.ndarray | None = None) -> np.ndarray:
    """1 / (rank + 1), averaged over tied positions; an unrankable target (inf) gives 0."""
    ahead, ties = _cases(ahead, ties)
    rankable = np.isfinite(ahead)
    values = np.zeros_like(ahead)
    if rankable.any():
        first = ahead[rankable].astype(np.int64)
        last = (ahead[rankable] + ties[rankable] + 1.0).astype(np.int64)
        # harmonic[r] = 1/1 + ... + 1/r
        harmonic = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, last.max() + 1))))
        values[rankable] = (harmonic[last] - harmonic[first]) / (ties[rankable] + 1.0)
    return values


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the n_items catalogue items that appear in at least one recommendation list."""
    if n_items < 1:
        raise ValueError("n_items must be positive")
    items = np.unique(np.asarray(recommended).ravel())
    return float(np.count_nonzero((items >= 1) & (items <= n_items))) / n_items


def _cases(ahead: np.ndarray, ties: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    ahead = np.asarray(ahead, dtype=np.float64)
    ties = np.zeros_like(ahead) if ties is None else np.asarray(ties, dtype=np.float64)
    if ahead.shape != ties.shape:
        raise ValueError("ahead and ties must have the same shape")
    return ahead, ties
