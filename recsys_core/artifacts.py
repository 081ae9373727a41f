"""Model versions on disk: safetensors weights + JSON, checksummed, written atomically.

A version directory holds
  weights.safetensors  model tensors (the frozen text embeddings included), item counts
  config.json          format, model and training configs, text model id, embedding checksum
  items.json           external item ids; internal index i is entry i - 1
  metrics.json         evaluation results
  manifest.json        sha256 and size of every file above
It is written into a temporary sibling directory and renamed into place, so a reader never sees
half a version. Loading checks the manifest, every checksum and every tensor shape before any
tensor reaches the model; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.inference import Recommender
from recsys_core.model import SeqRecModel

FORMAT = "shop-recs-model"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
ITEMS = "items.json"
METRICS = "metrics.json"
MANIFEST = "manifest.json"
_CONTENT_FILES = (WEIGHTS, CONFIG, ITEMS, METRICS)
# Tensors stored beside the model's own state.
_ITEM_COUNTS = "item_counts"
_SEARCH_TEXT = "item_text_embeddings"  # only for models that do not use text themselves


class ArtifactError(Exception):
    """A model version directory is missing, corrupt, tampered with or inconsistent."""


def save_version(
    directory: Path,
    model: SeqRecModel,
    model_config: ModelConfig,
    train_config: TrainConfig,
    item_ids: list[str],
    metrics: dict[str, Any],
    text_model_id: str | None,
    text_embeddings: np.ndarray | None,
    extra: dict[str, Any] | None = None,
    *,
    item_counts: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write a version directory atomically and return its manifest.

    `text_embeddings` [n_items, dim] are the frozen vectors the model was trained with (or, for
    an ID-only model, the ones search should use); `item_counts` [n_items + 1] let the served
    model rank items for a shopper with no history. `directory` must not exist or be empty.
    """
    directory = Path(directory)
    if model.config != model_config:
        raise ValueError("model_config does not describe this model")
    if len(item_ids) != model_config.n_items:
        raise ValueError(f"{len(item_ids)} item ids for {model_config.n_items} items")
    if directory.exists() and any(directory.iterdir()):
        raise ArtifactError(f"{directory} already exists and is not empty; versions are immutable")

    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    embedding_sha = None
    if text_embeddings is not None:
        embeddings = np.ascontiguousarray(text_embeddings, dtype=np.float32)
        if model_config.use_text:
            if not np.array_equal(embeddings, tensors["text_embeddings"][1:].numpy()):
                raise ValueError("text_embeddings differ from the ones the model was trained with")
        else:
            tensors[_SEARCH_TEXT] = torch.from_numpy(embeddings.copy())
        embedding_sha = _sha256(embeddings.tobytes())
    if item_counts is not None:
        counts = np.asarray(item_counts, dtype=np.int64)
        if counts.shape != (model_config.n_items + 1,):
            expected = (model_config.n_items + 1,)
            raise ValueError(f"item_counts has shape {counts.shape}, expected {expected}")
        tensors[_ITEM_COUNTS] = torch.from_numpy(counts.copy())

    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    contents = {
        WEIGHTS: save_safetensors(tensors),
        CONFIG: _json_bytes(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": created_at,
                "model_config": model_config.to_dict(),
                "train_config": train_config.to_dict(),
                "text_model_id": text_model_id,
                "text_embedding_sha256": embedding_sha,
                "extra": extra or {},
            }
        ),
        ITEMS: _json_bytes({"item_ids": [str(item) for item in item_ids]}),
        METRICS: _json_bytes(metrics),
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at,
        "n_items": model_config.n_items,
        "text_model_id": text_model_id,
        "files": {
            name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in contents.items()
        },
    }
    contents[MANIFEST] = _json_bytes(manifest)

    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for name, data in contents.items():
            with open(temporary / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(temporary, 0o755)
        os.replace(temporary, directory)  # replaces an empty directory; never a full one
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return manifest


def load_version(directory: Path, *, manifest_sha256: str | None = None) -> Recommender:
    """Load and verify a version directory; any inconsistency raises ArtifactError.

    The manifest vouches for every other file; pass `manifest_sha256` (recorded when the
    version was registered) to make sure the manifest itself is the one that was registered.
    """
    directory = Path(directory)
    manifest_bytes = _read_bytes(directory, MANIFEST)
    if manifest_sha256 is not None and _sha256(manifest_bytes) != manifest_sha256:
        raise ArtifactError(f"{directory / MANIFEST}: sha256 differs from the registered one")
    manifest = _read_json(directory, MANIFEST, manifest_bytes)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{directory}: not a {FORMAT} v{FORMAT_VERSION} directory "
            f"(format={manifest.get('format')!r}, version={manifest.get('format_version')!r})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or sorted(files) != sorted(_CONTENT_FILES):
        raise ArtifactError(f"{directory}: manifest must list exactly {', '.join(_CONTENT_FILES)}")
    contents = {}
    for name in _CONTENT_FILES:
        data = _read_bytes(directory, name)
        entry = files[name]
        if not isinstance(entry, dict) or _sha256(data) != entry.get("sha256"):
            raise ArtifactError(
                f"{directory / name}: sha256 does not match the manifest "
                "(the file is corrupt or was modified after saving)"
            )
        contents[name] = data

    config = _read_json(directory, CONFIG, contents[CONFIG])
    try:
        model_config = ModelConfig.from_dict(config["model_config"])
        train_config = TrainConfig.from_dict(config["train_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{directory / CONFIG}: invalid configuration: {error}") from error
    item_ids = _read_json(directory, ITEMS, contents[ITEMS]).get("item_ids")
    if not isinstance(item_ids, list) or len(item_ids) != model_config.n_items:
        raise ArtifactError(
            f"{directory / ITEMS}: expected {model_config.n_items} item ids, "
            f"found {len(item_ids) if isinstance(item_ids, list) else 'none'}"
        )
    try:
        tensors = load_safetensors(contents[WEIGHTS])
    except SafetensorError as error:
        raise ArtifactError(f"{directory / WEIGHTS}: unreadable safetensors: {error}") from error

    item_counts = tensors.pop(_ITEM_COUNTS, None)
    search_text = tensors.pop(_SEARCH_TEXT, None)
    model = SeqRecModel(model_config)
    _check_tensors(directory, model.state_dict(), tensors)
    model.load_state_dict(tensors)
    text = model.text_embeddings[1:] if model_config.use_text else search_text
    _check_text(directory, config, text, model_config)
    if item_counts is not None and tuple(item_counts.shape) != (model_config.n_items + 1,):
        raise ArtifactError(f"{directory / WEIGHTS}: item_counts has the wrong shape")
    return Recommender(
        model,
        item_ids,
        version_info={
            "directory": str(directory),
            "created_at": config.get("created_at"),
            "model_config": model_config.to_dict(),
            "train_config": train_config.to_dict(),
            "metrics": _read_json(directory, METRICS, contents[METRICS]),
            "extra": config.get("extra", {}),
        },
        text_model_id=config.get("text_model_id"),
        text_embeddings=None if search_text is None else search_text.numpy(),
        item_counts=None if item_counts is None else item_counts.numpy(),
    )


def _check_tensors(
    directory: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"{directory / WEIGHTS}: tensors do not match the configuration "
            f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})"
        )
    for name, tensor in expected.items():
        if found[name].shape != tensor.shape or found[name].dtype != tensor.dtype:
            raise ArtifactError(
                f"{directory / WEIGHTS}: tensor {name} is {found[name].dtype} "
                f"{tuple(found[name].shape)}, the configuration needs {tensor.dtype} "
                f"{tuple(tensor.shape)}"
            )


def _check_text(
    directory: Path, config: dict[str, Any], text: torch.Tensor | None, model_config: ModelConfig
) -> None:
    recorded = config.get("text_embedding_sha256")
    if text is None:
        if recorded is not None:
            raise ArtifactError(f"{directory}: config names text embeddings the weights lack")
        return
    if text.shape[0] != model_config.n_items:
        raise ArtifactError(f"{directory / WEIGHTS}: text embeddings for the wrong item count")
    if recorded is not None and _sha256(text.contiguous().numpy().tobytes()) != recorded:
        raise ArtifactError(f"{directory}: text embeddings do not match their recorded sha256")


def _read_bytes(directory: Path, name: str) -> bytes:
    try:
        return (directory / name).read_bytes()
    except FileNotFoundError as error:
        what = "not a model version directory" if name == MANIFEST else "file missing"
        raise ArtifactError(f"{directory / name}: {what}") from error


def _read_json(directory: Path, name: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{directory / name}: not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise ArtifactError(f"{directory / name}: expected a JSON object")
    return value


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
