"""A tiny synthetic shop with a learnable order, shared by the sequential-model tests.

Items fall into categories; a shopper stays in one category and walks its items in order
(item i -> i + 1, cyclic), so the next item is predictable from the last one, while every item
is about equally popular (popularity cannot do well). Each item's "text" is its category's
direction plus noise, so text alone tells the category but not the order. Some items of every
category never occur in any sequence: cold items that only text can place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_core.data import KIND_INDEX, LeaveOneOut, SequenceData, leave_one_out

N_CATEGORIES = 4
WARM_PER_CATEGORY = 8
COLD_PER_CATEGORY = 2
TEXT_DIM = 16


@dataclass
class SyntheticShop:
    data: SequenceData
    split: LeaveOneOut
    texts: np.ndarray  # [n_items, TEXT_DIM], L2-normalised
    category: np.ndarray  # [n_items + 1] category of each internal index (-1 for padding)
    cold: np.ndarray  # internal indices of items without interactions

    @property
    def n_items(self) -> int:
        return self.data.n_items


def make_shop(n_users: int = 240, seed: int = 0) -> SyntheticShop:
    rng = np.random.default_rng(seed)
    per_category = WARM_PER_CATEGORY + COLD_PER_CATEGORY
    n_items = N_CATEGORIES * per_category
    category = np.concatenate([[-1], np.repeat(np.arange(N_CATEGORIES), per_category)])
    # Internal index of the j-th item of category c is c * per_category + j + 1.
    warm = [c * per_category + np.arange(WARM_PER_CATEGORY) + 1 for c in range(N_CATEGORIES)]
    cold = np.concatenate(
        [c * per_category + WARM_PER_CATEGORY + np.arange(COLD_PER_CATEGORY) + 1
         for c in range(N_CATEGORIES)]
    )
    sequences, kinds = [], []
    for _ in range(n_users):
        items = warm[rng.integers(N_CATEGORIES)]
        start = rng.integers(WARM_PER_CATEGORY)
        length = rng.integers(4, 9)
        sequences.append(items[(start + np.arange(length)) % WARM_PER_CATEGORY].astype(np.int64))
        kinds.append(rng.choice([KIND_INDEX["view"], KIND_INDEX["purchase"]], size=length))
    texts = 0.3 * rng.normal(size=(n_items, TEXT_DIM))
    texts[np.arange(n_items), category[1:]] += 1.0
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    data = SequenceData(
        item_ids=[f"p{i}" for i in range(1, n_items + 1)],
        users=[f"u{u}" for u in range(n_users)],
        sequences=sequences,
        kinds=[k.astype(np.int64) for k in kinds],
        item_texts=[f"product {i} of category {category[i]}" for i in range(1, n_items + 1)],
    )
    return SyntheticShop(data, leave_one_out(data), texts.astype(np.float32), category, cold)
