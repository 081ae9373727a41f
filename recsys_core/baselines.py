"""Simple recommenders every trained model must beat, scored through the same evaluator.

Each is a ScoreFn once fitted: called with a batch of (histories, kinds) it returns scores of
shape [B, n_items + 1] (column 0 is padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys_core.data import item_counts


class PopularityModel:
    """Score = number of interactions with the item in the sequences it was fitted on.

    Fit it on training sequences only; fitting on all data (as the S3-Rec paper did) leaks the
    test targets and is used only to reproduce the published figure.
    """

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, sequences: Sequence[np.ndarray], n_items: int) -> PopularityModel:
        self.counts = item_counts(sequences, n_items).astype(np.float32)
        return self

    def __call__(self, histories: list[np.ndarray], kinds: list[np.ndarray]) -> np.ndarray:
        counts = _fitted(self.counts, "PopularityModel")
        return np.tile(counts, (len(histories), 1))


class ItemKNN:
    """Item-to-item cosine similarity of co-occurrence in users' sequences, summed over history.

    sim(i, j) = users(i and j) / sqrt(users(i) · users(j)). The similarity matrix is kept
    sparse (CSR arrays) because only items bought by the same users have a non-zero entry.
    Scores get a popularity term far below any similarity so that items with no evidence are
    ordered by popularity instead of tying.
    """

    _POPULARITY_WEIGHT = 1e-6

    def __init__(self) -> None:
        self.indptr: np.ndarray | None = None
        self.indices = np.zeros(0, dtype=np.int64)
        self.similarities = np.zeros(0, dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)
        self.n_items = 0

    def fit(self, sequences: Sequence[np.ndarray], n_items: int) -> ItemKNN:
        width = n_items + 1
        item_sets = [np.unique(np.asarray(sequence, dtype=np.int64)) for sequence in sequences]
        item_sets = [items for items in item_sets if len(items)]
        users_per_item = np.zeros(width, dtype=np.float64)
        if item_sets:
            users_per_item += np.bincount(np.concatenate(item_sets), minlength=width)
        pair_keys = [
            (items[:, None] * width + items[None, :]).ravel()
            for items in item_sets
            if len(items) > 1
        ]
        keys, together = (
            np.unique(np.concatenate(pair_keys), return_counts=True)
            if pair_keys
            else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        )
        rows, columns = np.divmod(keys, width)
        off_diagonal = rows != columns
        rows, columns, together = rows[off_diagonal], columns[off_diagonal], together[off_diagonal]
        self.similarities = (
            together / np.sqrt(users_per_item[rows] * users_per_item[columns])
        ).astype(np.float32)
        self.indices = columns  # keys are sorted, so rows come grouped and ascending: CSR order
        self.indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=width))))
        self.popularity = (users_per_item / max(users_per_item.max(), 1.0)).astype(np.float32)
        self.n_items = n_items
        return self

    def __call__(self, histories: list[np.ndarray], kinds: list[np.ndarray]) -> np.ndarray:
        indptr = _fitted(self.indptr, "ItemKNN")
        width = self.n_items + 1
        lengths = np.array([len(history) for history in histories], dtype=np.int64)
        history_items = (
            np.concatenate(histories).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
        )
        case_of_item = np.repeat(np.arange(len(histories)), lengths)
        starts, stops = indptr[history_items], indptr[history_items + 1]
        row_lengths = stops - starts
        # positions of every stored entry of every history item's row, without a Python loop
        offsets = np.repeat(starts - np.cumsum(row_lengths) + row_lengths, row_lengths)
        entries = offsets + np.arange(int(row_lengths.sum()))
        cases = np.repeat(case_of_item, row_lengths)
        scores = np.bincount(
            cases * width + self.indices[entries],
            weights=self.similarities[entries],
            minlength=len(histories) * width,
        ).reshape(len(histories), width)
        return (scores + self._POPULARITY_WEIGHT * self.popularity).astype(np.float32)


class LastItemTextModel:
    """Cosine similarity between each item's text embedding and the history's last item.

    The strong text-only baseline on Amazon Scientific (see shared/data/README.md): any
    text-aware sequential model has to beat it.
    """

    def __init__(self, item_embeddings: np.ndarray) -> None:
        """`item_embeddings`: [n_items, dim], L2-normalised, row i-1 for item index i."""
        embeddings = np.asarray(item_embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError("item_embeddings must be a [n_items, dim] matrix")
        self.embeddings = np.vstack([np.zeros((1, embeddings.shape[1]), np.float32), embeddings])

    def __call__(self, histories: list[np.ndarray], kinds: list[np.ndarray]) -> np.ndarray:
        last_items = np.array([history[-1] if len(history) else 0 for history in histories])
        return self.embeddings[last_items] @ self.embeddings.T


def _fitted(value: np.ndarray | None, name: str) -> np.ndarray:
    if value is None:
        raise RuntimeError(f"{name} must be fitted before scoring")
    return value
