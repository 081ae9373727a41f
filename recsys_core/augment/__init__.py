"""Training-data augmentation, chosen by `TrainConfig.augmentation` through a small registry.

Training asks `make_augmenter(train_config, ...)` for an augmenter, calls `fit` once on the
training sequences, then, for each training sequence and with probability
`train_config.augmentation_prob`, replaces it by `augment(items, kinds, rng)`.

`augment` returns `(items, kinds, context_mask)`: the new item and kind arrays (equal length)
and a boolean mask of positions that are context only, never a prediction target (masked or
generated items). Augmenters draw only from the `rng` they are given, a generator separate from
the one that orders batches, so "none" leaves training bit-for-bit the same as no augmentation.

"none" and "simple" (crop / mask / reorder, as in CL4SRec) live here. Other augmenters register
themselves from their own module: `make_augmenter` imports `recsys_core.augment.<name>` on first
use, so `recsys_core/augment/gan.py` calling `@register_augmenter("gan")` is all "gan" needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from recsys_core.config import TrainConfig


class Augmenter(Protocol):
    """What training needs from an augmentation method."""

    def fit(self, train_sequences: Sequence[np.ndarray], **context: Any) -> None:
        """Learn from the training sequences only (never validation or test items)."""

    def augment(
        self, items: np.ndarray, kinds: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (items, kinds, context_mask) for one training sequence."""


AugmenterFactory = Callable[..., Augmenter]
_REGISTRY: dict[str, AugmenterFactory] = {}


def register_augmenter(name: str) -> Callable[[AugmenterFactory], AugmenterFactory]:
    """Decorator: make `TrainConfig(augmentation=name)` build augmenters with this factory."""

    def decorate(factory: AugmenterFactory) -> AugmenterFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"augmenter {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def make_augmenter(train_config: TrainConfig, **context: Any) -> Augmenter | None:
    """The augmenter named by the config, or None for "none" (training skips the hook).

    `context` (n_items, model_config, text_embeddings, device, progress, ...) is passed to the
    factory; factories take what they need and ignore the rest.
    """
    name = train_config.augmentation
    if name == "none":
        return None
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
        if name not in _REGISTRY:
            known = ", ".join(["none", *sorted(_REGISTRY)])
            raise ValueError(f"unknown augmentation {name!r}; known: {known}")
    return _REGISTRY[name](train_config=train_config, **context)


@register_augmenter("simple")
class SimpleAugmenter:
    """Crop, mask or reorder one sequence (CL4SRec's operators), one operator per call.

    Crop keeps a random contiguous part, mask hides items behind the padding item (0) and marks
    them as context only, reorder shuffles a random contiguous part. Sequences shorter than
    `min_length` are left alone: there is nothing to vary.
    """

    def __init__(
        self,
        *,
        crop_ratio: float = 0.6,
        mask_ratio: float = 0.3,
        reorder_ratio: float = 0.3,
        min_length: int = 3,
        **_context: Any,
    ) -> None:
        self.crop_ratio = crop_ratio
        self.mask_ratio = mask_ratio
        self.reorder_ratio = reorder_ratio
        self.min_length = min_length

    def fit(self, train_sequences: Sequence[np.ndarray], **context: Any) -> None:
        """Nothing to learn: the operators are fixed."""

    def augment(
        self, items: np.ndarray, kinds: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(items)
        context = np.zeros(n, dtype=bool)
        if n < self.min_length:
            return items, kinds, context
        operator = rng.integers(3)
        if operator == 0:
            keep = max(2, int(n * self.crop_ratio))
            start = int(rng.integers(n - keep + 1))
            return items[start : start + keep], kinds[start : start + keep], context[:keep]
        if operator == 1:
            # Never mask the last item: it is the target the final position learns from.
            n_mask = max(1, int((n - 1) * self.mask_ratio))
            hidden = rng.choice(n - 1, size=n_mask, replace=False)
            items = items.copy()
            items[hidden] = 0
            context[hidden] = True
            return items, kinds, context
        span = max(2, int(n * self.reorder_ratio))
        start = int(rng.integers(n - span + 1))
        order = np.arange(n)
        order[start : start + span] = start + rng.permutation(span)
        return items[order], kinds[order], context
