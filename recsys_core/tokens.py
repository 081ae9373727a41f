"""Item side vectors from the exact words of item texts: hashed bag of tokens.

A sentence encoder blurs identifiers: "brand 812" and "brand 813" embed almost alike, yet for
recommendation they are different brands. When item texts are lists of categorical tags
(category and brand ids, as in Amazon Beauty's attribute files), a multi-hot of the tokens
keeps every tag distinct, and the model's learned projection turns it into one embedding per
tag. Hashing the tokens into a fixed number of buckets makes the encoder stateless, so products
added after training get vectors from the same function without a stored vocabulary.

`HashedTokenEncoder` offers the part of `TextEncoder`'s interface that training uses
(`model_id`, `dim`, `encode`), so `train_version` takes either.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

import numpy as np

_TOKEN = re.compile(r"\w+")


class HashedTokenEncoder:
    """Texts -> L2-normalised multi-hot vectors over `dim` hashed token buckets."""

    def __init__(self, dim: int = 2048) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.model_id = f"hashed-tokens-{dim}"

    def encode(
        self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """One row per text; a text without tokens gets a zero row."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        buckets: dict[str, int] = {}
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(str(text).lower()):
                if token not in buckets:
                    buckets[token] = self._bucket(token)
                vectors[row, buckets[token]] = 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        if progress is not None:
            progress(len(texts), len(texts))
        return vectors

    def _bucket(self, token: str) -> int:
        # A keyed hash would change between processes; blake2b of the token never does.
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "little") % self.dim
