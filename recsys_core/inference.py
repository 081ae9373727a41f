"""Serving a trained model: top-k for a shopper, similar items, re-ranking, cold products.

The item table is computed once when the Recommender is built; a request then costs one small
Transformer pass over the shopper's history, one matrix-vector product with the table and a
top-k selection (`best_first`), which keeps top-10 over 50,000 products within a few
milliseconds on a CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from recsys_core.data import KIND_INDEX
from recsys_core.evaluation import ScoreFn
from recsys_core.model import SeqRecModel, latest_items, pad_histories

_BATCH = 256  # shoppers per forward pass in recommend_batch
NEIGHBOURS = 200  # nearest items kept per item asked about (similar_items)
_NEIGHBOUR_LISTS = 4096  # items whose neighbours are kept (about 10 MB)
# In similar lists a product placed by with_items counts this share of its similarity: with all
# of it, new products took a fifth of the slots and NDCG@10 fell; at 0.9 they took 7% and
# NDCG@10 rose 1-1.5% (python -m benchmarks.new_products, seeds 0 and 1).
PLACED_SIMILARITY_WEIGHT = 0.9


def best_first(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the (at most) k highest finite scores, highest first; equal scores in
    position order. -inf marks an excluded item: it is never returned.

    torch's top-k selection: on a catalogue-sized row it is faster than numpy's
    ``argpartition`` (``python -m benchmarks.recsys_speed`` times the calls that use it)."""
    top = torch.topk(torch.from_numpy(scores), min(k, len(scores))).indices.numpy()
    top = top[np.isfinite(scores[top])]  # excluded items come last in a top-k: drop them
    top.sort()
    return top[np.argsort(-scores[top], kind="stable")]


@dataclass(frozen=True)
class Scored:
    """One recommended item; `reason_item` is the history item that supports it most."""

    item: str
    score: float
    reason_item: str | None


class Recommender:
    """A trained model plus its item id map, ready to answer requests (external string ids)."""

    def __init__(
        self,
        model: SeqRecModel,
        item_ids: Sequence[str],
        *,
        version_info: dict[str, Any] | None = None,
        text_model_id: str | None = None,
        text_embeddings: np.ndarray | None = None,
        item_counts: np.ndarray | None = None,
    ) -> None:
        """`text_embeddings` [n_items, dim] is only needed for a model that does not use text
        itself (it keeps its own); `item_counts` [n_items + 1] ranks items for an empty history.
        """
        config = model.config
        if len(item_ids) != config.n_items:
            raise ValueError(f"{len(item_ids)} item ids for a model of {config.n_items} items")
        self.model = model.eval().cpu()
        self.version_info = version_info or {}
        self.text_model_id = text_model_id
        self._item_ids = [str(item) for item in item_ids]
        self._index = {item: position + 1 for position, item in enumerate(self._item_ids)}
        if len(self._index) != len(self._item_ids):
            raise ValueError("item_ids contains duplicates")
        if config.use_text:
            text_embeddings = self.model.text_embeddings[1:].numpy()
        # Text embeddings in blocks (the trained catalogue, then items added by with_items),
        # so that adding a few products does not copy the whole catalogue's.
        self._text = [] if text_embeddings is None else [np.asarray(text_embeddings, np.float32)]
        self._counts = None if item_counts is None else np.asarray(item_counts, np.float64)
        with torch.inference_mode():
            self._table = self.model.item_vectors().float().contiguous()
            # Text-match tables (codes, each row's weight), extended by with_items.
            self._codes = self.model.text_codes.clone() if config.uses_text_match else None
            self._match_weights = self.model.text_match_weights()
        self._trained_items = len(self._item_ids)  # rows after these were placed by with_items
        # Each row's weight in similar lists (None: all 1); with_items sets the placed rows'.
        self._similarity_weights: np.ndarray | None = None
        self._unit_table: np.ndarray | None = None
        self._neighbours = lru_cache(maxsize=_NEIGHBOUR_LISTS)(self._rank_neighbours)

    # ----------------------------------------------------------------- catalogue
    @property
    def item_ids(self) -> list[str]:
        return list(self._item_ids)

    @property
    def has_text(self) -> bool:
        """Whether this recommender keeps text embeddings (for items_like_text, with_items)."""
        return bool(self._text)

    @property
    def text_embeddings(self) -> np.ndarray | None:
        """Text embedding per item (for personalised search), aligned with `item_ids`."""
        if not self._text:
            return None
        if len(self._text) > 1:
            self._text = [np.concatenate(self._text)]
        return self._text[0]

    def item_vectors(self) -> np.ndarray:
        """The learned vector of every item [n_items, d], aligned with `item_ids`."""
        return self._table[1:].numpy().copy()

    def with_items(
        self,
        item_ids: Sequence[str],
        text_embeddings: np.ndarray,
        *,
        boost: float = 1.0,
        similarity_weight: float = PLACED_SIMILARITY_WEIGHT,
    ) -> Recommender:
        """A copy that also knows products added after training, each placed by its text
        alone: the model's text projection, and the text-match weight of an item with no
        interactions. This recommender stays as it is, so requests holding it are undisturbed.

        `boost` multiplies the placed vectors: above 1 a new item scores higher with the
        shoppers its text suits (and lower with the others), so new items take more slots.
        `similarity_weight` multiplies their similarity in similar lists (`similar_items`,
        `items_like_text`); a placed item's own similar list is ranked by its text.
        """
        new_ids = [str(item) for item in item_ids]
        embeddings = np.asarray(text_embeddings, dtype=np.float32)
        if not self._text or not self.model.config.use_text:
            raise ValueError("this model was trained without text: it cannot place new items")
        if not boost > 0:
            raise ValueError(f"boost must be > 0, got {boost!r}")
        if not similarity_weight > 0:
            raise ValueError(f"similarity_weight must be > 0, got {similarity_weight!r}")
        text_dim = self._text[0].shape[1]
        if embeddings.shape != (len(new_ids), text_dim):
            expected = (len(new_ids), text_dim)
            raise ValueError(f"text_embeddings has shape {embeddings.shape}, expected {expected}")
        known = [item for item in new_ids if item in self._index]
        if known or len(set(new_ids)) != len(new_ids):
            raise ValueError(f"items already in the catalogue or repeated: {known[:5] or new_ids}")
        extended = copy.copy(self)
        with torch.inference_mode():
            side = torch.from_numpy(embeddings)
            placed = boost * self.model.project_text(side).float()
            extended._table = torch.cat([self._table, placed])
            if self._codes is not None and self._match_weights is not None:
                extended._codes = torch.cat([self._codes, self.model.text_code(side)])
                no_interactions = torch.zeros(len(new_ids), dtype=torch.long)  # bucket 0
                extended._match_weights = torch.cat(
                    [self._match_weights, self.model.text_match_weights(no_interactions)]
                )
        extended._item_ids = [*self._item_ids, *new_ids]
        extended._index = {
            **self._index, **{item: len(self._item_ids) + n for n, item in enumerate(new_ids, 1)}
        }
        extended._text = [*self._text, embeddings]
        if self._counts is not None:
            extended._counts = np.concatenate([self._counts, np.zeros(len(new_ids))])
        weights = (np.ones(len(self._table), np.float32) if self._similarity_weights is None
                   else self._similarity_weights)
        extended._similarity_weights = np.concatenate(
            [weights, np.full(len(new_ids), similarity_weight, np.float32)])
        extended._unit_table = None
        extended._neighbours = lru_cache(maxsize=_NEIGHBOUR_LISTS)(extended._rank_neighbours)
        return extended

    # ----------------------------------------------------------------- requests
    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        *,
        kinds: Sequence[str] | None = None,
        exclude: Iterable[str] = (),
        allowed: Iterable[str] | np.ndarray | None = None,
        exclude_history: bool = True,
    ) -> list[Scored]:
        """Top-k items for one shopper; unknown history items and unknown kinds are ignored.

        `allowed`: the only items that may be returned, as ids or as an `item_mask` (a set
        that many requests share, such as the available products, is best resolved once).
        With no known history the ranking falls back to training popularity (no reason).
        """
        return self.recommend_batch(
            [history],
            k,
            kinds=None if kinds is None else [kinds],
            excludes=[exclude],
            allowed=allowed,
            exclude_history=exclude_history,
        )[0]

    def recommend_batch(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        *,
        kinds: Sequence[Sequence[str] | None] | None = None,
        excludes: Sequence[Iterable[str]] | None = None,
        allowed: Iterable[str] | np.ndarray | None = None,
        exclude_history: bool = True,
    ) -> list[list[Scored]]:
        """`recommend` for many shoppers, one Transformer pass per batch of shoppers."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if kinds is not None and len(kinds) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(kinds)} kind lists")
        if excludes is not None and len(excludes) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(excludes)} exclude lists")
        allowed_mask = self._allowed_mask(allowed)
        encoded = [
            self._encode(history, None if kinds is None else kinds[row])
            for row, history in enumerate(histories)
        ]
        results: list[list[Scored]] = []
        for start in range(0, len(encoded), _BATCH):
            chunk = encoded[start : start + _BATCH]
            scores = self._scores(chunk)
            for offset, (items, _) in enumerate(chunk):
                row = scores[offset]
                row[0] = -np.inf
                if exclude_history:
                    row[items] = -np.inf
                if excludes is not None:
                    row[self._known(excludes[start + offset])] = -np.inf
                if allowed_mask is not None:
                    row[~allowed_mask] = -np.inf
                results.append(self._top(row, k, items))
        return results

    def similar_items(
        self,
        item: str,
        k: int = 10,
        *,
        exclude: Iterable[str] = (),
        allowed: Iterable[str] | np.ndarray | None = None,
    ) -> list[Scored]:
        """Items whose learned vectors are closest (cosine) to `item`; KeyError if unknown.

        An item placed by `with_items` has only a guess of a vector, made from its text: its
        list is ranked by text instead (as `items_like_text`).

        The best NEIGHBOURS of an item are kept (least recently asked dropped first), so a
        product page's second list about the same product, or the next request for it, costs
        no pass over the catalogue; only when exclusions and `allowed` (ids or an `item_mask`)
        leave fewer than k of the kept neighbours is the whole catalogue ranked again.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        index = self._index.get(str(item))
        if index is None:
            raise KeyError(f"unknown item {item!r}")
        excluded = self._known(exclude)
        allowed_mask = self._allowed_mask(allowed)
        ranked, scores = self._neighbours(index)
        keep = ~np.isin(ranked, excluded)
        if allowed_mask is not None:
            keep &= allowed_mask[ranked]
        # The kept list is every item's best NEIGHBOURS in order: enough of it left is exact.
        if int(keep.sum()) >= k or len(ranked) < NEIGHBOURS:
            top = ranked[keep][:k]
            return [Scored(self._item_ids[i - 1], float(s), str(item))
                    for i, s in zip(top, scores[keep][:k], strict=True)]
        scores = self._similarities(index)
        scores[excluded] = -np.inf
        if allowed_mask is not None:
            scores[~allowed_mask] = -np.inf
        return [
            Scored(found.item, found.score, str(item))
            for found in self._top(scores, k, np.zeros(0, dtype=np.int64))
        ]

    def items_like_text(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        exclude: Iterable[str] = (),
        allowed: Iterable[str] | np.ndarray | None = None,
    ) -> list[Scored]:
        """Items whose text embeddings are closest to `vector`, an embedding made by the
        model's text encoder: similar items for a product the model was never trained on.

        Ranks the catalogue with a top-k selection, not a sort of every item. ValueError when
        this model keeps no text embeddings or `vector` is not one of them in shape.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not self._text:
            raise ValueError("this model keeps no text embeddings")
        vector = np.asarray(vector, dtype=np.float32)
        text_dim = self._text[0].shape[1]
        if vector.shape != (text_dim,):
            raise ValueError(f"vector has shape {vector.shape}, expected ({text_dim},)")
        scores = self._text_similarities(vector)
        scores[self._known(exclude)] = -np.inf
        allowed_mask = self._allowed_mask(allowed)
        if allowed_mask is not None:
            scores[~allowed_mask] = -np.inf
        return self._top(scores, k, np.zeros(0, dtype=np.int64))

    def score(
        self,
        history: Sequence[str],
        candidates: Sequence[str],
        kinds: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Model scores of `candidates` for this shopper (for re-ranking a given list).

        Unknown candidates score -inf; with no known history the score is log(1 + training
        count) when counts are known, else 0.
        """
        row = self._row(history, kinds)
        positions = np.array([self._index.get(str(c), 0) for c in candidates], dtype=np.int64)
        scored = row[positions].astype(np.float32)
        scored[positions == 0] = -np.inf
        return scored

    def score_all(self, history: Sequence[str], kinds: Sequence[str] | None = None) -> np.ndarray:
        """Model scores of every item [n_items], aligned with `item_ids` (as `score` scores
        them): for a whole-catalogue quantity, with no lookup per item."""
        return self._row(history, kinds)[1:]

    def positions(self, items: Iterable[str]) -> np.ndarray:
        """Positions in `item_ids` of those of `items` this model knows (the rest dropped)."""
        return self._known(items) - 1

    def item_mask(self, items: Iterable[str]) -> np.ndarray:
        """[n_items] booleans aligned with `item_ids`, True for those of `items` this model
        knows: an `allowed` set resolved once, for the requests that share it."""
        mask = np.zeros(len(self._item_ids), dtype=bool)
        mask[self.positions(items)] = True
        return mask

    def as_score_fn(self, item_ids: Sequence[str]) -> ScoreFn:
        """This model as the evaluator's ScoreFn over another catalogue's internal indices.

        Index i of `item_ids` (1-based) is mapped to this model's item of the same id; items
        this model does not know score -inf and are dropped from histories. The training
        pipeline evaluates new and active versions through this, i.e. through serving code.
        """
        ours = np.array([0] + [self._index.get(str(i), 0) for i in item_ids], dtype=np.int64)
        unknown = ours == 0

        def score(histories: list[np.ndarray], kinds: list[np.ndarray]) -> np.ndarray:
            encoded = []
            for history, history_kinds in zip(histories, kinds, strict=True):
                mapped = ours[np.asarray(history, dtype=np.int64)]
                keep = mapped > 0
                encoded.append((mapped[keep], np.asarray(history_kinds, dtype=np.int64)[keep]))
            scores = self._scores(encoded)[:, ours]
            scores[:, unknown] = -np.inf
            return scores

        return score

    # ----------------------------------------------------------------- internals
    def _encode(
        self, history: Sequence[str], kinds: Sequence[str] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """External ids (and kind names) -> internal arrays, dropping unknown items and kinds."""
        if kinds is not None and len(kinds) != len(history):
            raise ValueError(f"history has {len(history)} items but kinds has {len(kinds)}")
        default = self.model.config.default_kind
        items, item_kinds = [], []
        for position, item in enumerate(history):
            index = self._index.get(str(item))
            kind = default if kinds is None else KIND_INDEX.get(kinds[position])
            if index is not None and kind is not None:
                items.append(index)
                item_kinds.append(kind)
        return np.array(items, dtype=np.int64), np.array(item_kinds, dtype=np.int64)

    def _row(self, history: Sequence[str], kinds: Sequence[str] | None) -> np.ndarray:
        """One shopper's scores [n_items + 1]; with no known history log(1 + training count)
        when counts are known, else 0."""
        items, item_kinds = self._encode(history, kinds)
        if len(items):
            return self._scores([(items, item_kinds)])[0]
        if self._counts is not None:
            return np.log1p(self._counts)
        return np.zeros(len(self._table))

    def _scores(self, encoded: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Scores [B, n_items + 1]; rows of empty histories get training popularity."""
        config = self.model.config
        items, kinds, lengths = pad_histories(
            [e[0] for e in encoded], [e[1] for e in encoded], config.max_len, config.default_kind
        )
        with torch.inference_mode():
            users = self.model.user_vectors(items, kinds, lengths, self._table).numpy()
        # numpy's BLAS makes these few-row products with the tables (rarely still in the CPU
        # cache between requests) faster than torch's matmul does.
        scores = users @ self._table.numpy().T
        if self._codes is not None and self._match_weights is not None:
            # The text match (SeqRecModel.text_match), with the text similarity computed once
            # for it and for the text prior.
            codes = self._codes.numpy()
            similarity = codes[latest_items(items, lengths).numpy()] @ codes.T
            scores += similarity * self._match_weights.numpy()
            if config.text_prior:
                # The calibrated text prior (ModelConfig.text_prior), on each row's own scale.
                spread = scores[:, 1:].std(axis=1, ddof=1, keepdims=True)
                scores += config.text_prior * spread * similarity
        empty = lengths.numpy() == 0
        if empty.any():
            fallback = np.log1p(self._counts) if self._counts is not None else -np.inf
            scores[empty] = fallback
        return scores

    def _similarities(self, index: int) -> np.ndarray:
        """Every item's similarity to item `index` (-inf for the padding row and itself): the
        cosine of their vectors, or of their texts for an item placed by with_items."""
        if index > self._trained_items:
            scores = self._text_similarities(self._text_of(index))
        else:
            if self._unit_table is None:
                table = self._table.numpy()
                norms = np.linalg.norm(table, axis=1, keepdims=True)
                self._unit_table = table / np.maximum(norms, 1e-12)
            scores = self._unit_table @ self._unit_table[index]
            if self._similarity_weights is not None:
                scores *= self._similarity_weights
        scores[0] = -np.inf
        scores[index] = -np.inf
        return scores

    def _text_of(self, index: int) -> np.ndarray:
        """Item `index`'s text embedding, read from its block (the blocks stay as they are)."""
        row = index - 1
        for block in self._text:
            if row < len(block):
                return block[row]
            row -= len(block)
        raise IndexError(f"no text embedding for item {index}")

    def _text_similarities(self, vector: np.ndarray) -> np.ndarray:
        """Every item's text embedding times `vector`, weighted (-inf for the padding row)."""
        scores = np.empty(len(self._table), dtype=np.float32)
        scores[0] = -np.inf  # the padding row
        start = 1
        for block in self._text:
            np.matmul(block, vector, out=scores[start : start + len(block)])
            start += len(block)
        if self._similarity_weights is not None:
            scores *= self._similarity_weights
        return scores

    def _rank_neighbours(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The NEIGHBOURS most similar items to item `index`, best first, and their scores."""
        scores = self._similarities(index)
        top = best_first(scores, NEIGHBOURS)
        return top, scores[top]

    def _top(self, scores: np.ndarray, k: int, history: np.ndarray) -> list[Scored]:
        """The k best finite scores, best first, each with its supporting history item."""
        top = best_first(scores, k)
        if not len(top):
            return []
        reasons = self._reasons(top, history)
        return [
            Scored(self._item_ids[i - 1], float(scores[i]), reason)
            for i, reason in zip(top, reasons, strict=True)
        ]

    def _reasons(self, top: np.ndarray, history: np.ndarray) -> list[str | None]:
        """For each recommended item, the history item whose vector has the largest dot
        product with it: the past event that pulls this recommendation up most."""
        if not len(history):
            return [None] * len(top)
        candidates = np.unique(history)
        table = self._table.numpy()
        support = table[candidates] @ table[top].T  # [history items, recommended]
        best = candidates[support.argmax(axis=0)]
        return [self._item_ids[i - 1] for i in best]

    def _known(self, items: Iterable[str]) -> np.ndarray:
        return np.array(
            [self._index[i] for i in map(str, items) if i in self._index], dtype=np.int64
        )

    def _allowed_mask(self, allowed: Iterable[str] | np.ndarray | None) -> np.ndarray | None:
        """`allowed` as booleans over the table's rows (row 0, the padding, never allowed)."""
        if allowed is None:
            return None
        mask = np.zeros(len(self._table), dtype=bool)
        if isinstance(allowed, np.ndarray):
            if allowed.dtype != bool or allowed.shape != (len(self._item_ids),):
                raise ValueError(
                    f"an allowed mask must be {len(self._item_ids)} booleans (item_mask), got "
                    f"{allowed.dtype} {allowed.shape}"
                )
            mask[1:] = allowed
        else:
            mask[self._known(allowed)] = True
        return mask
