"""The one evaluator for every model, baseline and benchmark: full ranking over all items.

Protocol (as in S3-Rec / SASRec full-ranking tables): score every catalogue item, remove the
items already in the user's history, rank the rest, and read off where the held-out target
landed (ties broken at random in expectation, see recsys_core.metrics). Work is batched so
that 22k users x 12k items never sits in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsys_core import metrics

ScoreFn = Callable[[list[np.ndarray], list[np.ndarray]], "np.ndarray | torch.Tensor"]
"""(histories, kinds) of a batch -> scores [B, n_items + 1]; column 0 (padding) is ignored."""

COLD_THRESHOLD = 5
"""A target with fewer training interactions than this is "cold"."""

HEAD_SHARE = 0.2
"""The most-interacted 20% of items are the head; targets outside it form the "tail" slice."""

HISTORY_SLICES: tuple[tuple[str, int, float], ...] = (
    ("short_history(<=3)", 0, 3),
    ("medium_history(4-10)", 4, 10),
    ("long_history(>10)", 11, np.inf),
)


@dataclass
class EvalReport:
    """Averages over all cases, the same per slice (each with its own n_cases)."""

    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    n_cases: int

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "slices": self.slices, "n_cases": self.n_cases}


def evaluate(
    score_fn: ScoreFn,
    histories: Sequence[np.ndarray],
    kinds: Sequence[np.ndarray],
    targets: np.ndarray,
    n_items: int,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 256,
    exclude_history: bool = True,
    train_item_counts: np.ndarray | None = None,
) -> EvalReport:
    """Rank all n_items items for each (history, target) case and report the metrics.

    `train_item_counts` (length n_items + 1) enables the cold / tail / head target slices.
    A target that is itself in the history is unrankable when history is excluded (a miss).
    """
    targets = np.asarray(targets, dtype=np.int64)
    _check_inputs(histories, kinds, targets, n_items, ks, batch_size, train_item_counts)
    ks = tuple(sorted(set(ks)))
    ahead = np.empty(len(targets), dtype=np.float64)
    ties = np.empty(len(targets), dtype=np.float64)
    covered = {k: np.zeros(n_items + 1, dtype=bool) for k in ks}
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        batch_histories = [np.asarray(history, dtype=np.int64) for history in histories[start:stop]]
        scores = _masked_scores(
            score_fn(batch_histories, list(kinds[start:stop])),
            batch_histories,
            n_items,
            exclude_history,
        )
        batch_targets = torch.from_numpy(targets[start:stop])
        ahead[start:stop], ties[start:stop] = metrics.target_ranks(scores, batch_targets)
        top_scores, top_items = scores.topk(min(max(ks), n_items), dim=1)
        for k in ks:
            shown = top_items[:, :k][torch.isfinite(top_scores[:, :k])]
            covered[k][shown.numpy()] = True

    overall = _ranking_metrics(ahead, ties, ks)
    for k in ks:
        overall[f"coverage@{k}"] = metrics.catalogue_coverage(np.flatnonzero(covered[k]), n_items)
    history_lengths = np.array([len(history) for history in histories])
    slices = {
        name: _slice_metrics(ahead, ties, ks, (history_lengths >= low) & (history_lengths <= high))
        for name, low, high in HISTORY_SLICES
    }
    if train_item_counts is not None:
        counts = np.asarray(train_item_counts)
        target_counts = counts[targets]
        slices["cold_target"] = _slice_metrics(ahead, ties, ks, target_counts < COLD_THRESHOLD)
        head = _head_items(counts)
        slices["tail_target"] = _slice_metrics(ahead, ties, ks, ~head[targets])
        slices["head_target"] = _slice_metrics(ahead, ties, ks, head[targets])
    return EvalReport(metrics=overall, slices=slices, n_cases=len(targets))


def _check_inputs(
    histories: Sequence[np.ndarray],
    kinds: Sequence[np.ndarray],
    targets: np.ndarray,
    n_items: int,
    ks: Sequence[int],
    batch_size: int,
    train_item_counts: np.ndarray | None,
) -> None:
    if not len(targets):
        raise ValueError("no cases to evaluate")
    if len(histories) != len(targets) or len(kinds) != len(targets):
        raise ValueError(
            f"histories ({len(histories)}), kinds ({len(kinds)}) and targets ({len(targets)}) "
            "must have one entry per case"
        )
    if targets.min() < 1 or targets.max() > n_items:
        raise ValueError(f"targets must be item indices in 1..{n_items}")
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    if train_item_counts is not None and len(train_item_counts) != n_items + 1:
        raise ValueError(f"train_item_counts must have length n_items + 1 = {n_items + 1}")


def _masked_scores(
    raw_scores: np.ndarray | torch.Tensor,
    histories: list[np.ndarray],
    n_items: int,
    exclude_history: bool,
) -> torch.Tensor:
    """A float32 copy of the scores with padding (and history items) set to -inf."""
    scores = torch.as_tensor(raw_scores).detach().to(device="cpu", dtype=torch.float32).clone()
    if scores.shape != (len(histories), n_items + 1):
        raise ValueError(
            f"score_fn returned shape {tuple(scores.shape)}, expected "
            f"({len(histories)}, {n_items + 1}) = (batch, n_items + 1)"
        )
    scores[:, 0] = -torch.inf
    if exclude_history:
        lengths = [len(history) for history in histories]
        if sum(lengths):
            rows = torch.repeat_interleave(torch.arange(len(histories)), torch.tensor(lengths))
            columns = torch.from_numpy(np.concatenate(histories))
            scores[rows, columns] = -torch.inf
    return scores


def _ranking_metrics(ahead: np.ndarray, ties: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    values: dict[str, float] = {}
    for k in ks:
        values[f"ndcg@{k}"] = float(metrics.ndcg_at_k(ahead, k, ties).mean())
        values[f"recall@{k}"] = float(metrics.recall_at_k(ahead, k, ties).mean())
        values[f"precision@{k}"] = float(metrics.precision_at_k(ahead, k, ties).mean())
        values[f"f1@{k}"] = float(metrics.f1_at_k(ahead, k, ties).mean())
    values["mrr"] = float(metrics.reciprocal_rank(ahead, ties).mean())
    return values


def _slice_metrics(
    ahead: np.ndarray, ties: np.ndarray, ks: Sequence[int], mask: np.ndarray
) -> dict[str, float]:
    """Metrics on the masked cases; an empty slice reports n_cases 0 and no metrics."""
    n_cases = int(mask.sum())
    if not n_cases:
        return {"n_cases": 0}
    return {**_ranking_metrics(ahead[mask], ties[mask], ks), "n_cases": n_cases}


def _head_items(counts: np.ndarray) -> np.ndarray:
    """Boolean mask over item indices: the HEAD_SHARE most-interacted items (ties by index)."""
    n_items = len(counts) - 1
    n_head = int(np.ceil(HEAD_SHARE * n_items))
    order = np.argsort(-counts[1:], kind="stable") + 1
    head = np.zeros(len(counts), dtype=bool)
    head[order[:n_head]] = True
    return head
