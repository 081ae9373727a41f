"""Model versions in Django's storage: store, gate, load.

A version is written complete into a local temporary folder by recsys_core (safetensors + JSON with
a checksummed manifest), copied file by file into storage under a fresh folder name, and only then
given a ModelVersion row: a half-written version can never be active or even listed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from recsys_core.artifacts import ArtifactError, load_version
from recsys_core.config import TrainConfig
from recsys_core.inference import Recommender
from recsys_core.text import TextEncoder

from .conf import recs_settings
from .models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)

GATE_METRIC = "ndcg@10"
MANIFEST = "manifest.json"


@dataclass
class TrainingSettings:
    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


def train_config_for(parameters: dict | None) -> TrainingSettings:
    """SHOP_RECS["TRAINING"] overlaid with a run's own parameters.

    Keys named like ModelConfig fields go to the model, the rest to TrainConfig; an unknown key
    raises ValueError naming it.
    """
    from recsys_core.config import ModelConfig

    merged = {**DEFAULT_TRAINING, **recs_settings.TRAINING, **(parameters or {})}
    model_fields = {f for f in ModelConfig.__dataclass_fields__ if f != "n_items"}
    model = {k: v for k, v in merged.items() if k in model_fields}
    train = TrainConfig.from_dict({k: v for k, v in merged.items() if k not in model_fields})
    return TrainingSettings(model=model, train=train)


# Defaults sized for a shop on a CPU worker; SHOP_RECS["TRAINING"] overrides any of them.
# The text-match channel (and with it the text prior calibrated on validation) is what lifts
# new and rarely bought products (python -m benchmarks.quality --dataset scientific).
DEFAULT_TRAINING: dict = {"epochs": 40, "patience": 5, "batch_size": 128, "text_match_dim": 64}


def var_dir() -> Path:
    """Local folder for caches: SHOP_RECS["LOCAL_CACHE_DIR"], or one inside MEDIA_ROOT."""
    if recs_settings.LOCAL_CACHE_DIR:
        return Path(recs_settings.LOCAL_CACHE_DIR)
    return Path(settings.MEDIA_ROOT or tempfile.gettempdir()) / "shop_recs_cache"


@lru_cache(maxsize=1)
def text_encoder() -> TextEncoder:
    """The product-text encoder, one per process, with its on-disk embedding cache."""
    return TextEncoder(recs_settings.TEXT_MODEL_PATH, cache_dir=var_dir() / "embedding-cache")


@dataclass
class GateDecision:
    promote: bool
    reason: str


def promotion_gate(metrics: dict, *, margin: float) -> GateDecision:
    """Promote only if the new model beats popularity and the active model on held-out NDCG@10."""
    new = metrics["model"][GATE_METRIC]
    for rival in ("popularity", "active"):
        if rival not in metrics:
            continue
        theirs = metrics[rival][GATE_METRIC]
        if new <= theirs * (1 + margin) and not (theirs == 0 and new > 0):
            return GateDecision(False, (
                f"kept inactive: {GATE_METRIC} {new:.4f} does not beat the {rival} model's "
                f"{theirs:.4f} by the required margin of {margin:.0%}"
            ))
    rivals = ", ".join(
        f"{r} {metrics[r][GATE_METRIC]:.4f}" for r in ("active", "popularity") if r in metrics
    )
    return GateDecision(True, f"activated: {GATE_METRIC} {new:.4f} beats {rivals}")


def store_version(run: TrainingRun | None, local_dir: Path, metrics: dict, snapshot: dict,
                  decision: GateDecision) -> ModelVersion:
    """Copy a finished artifact folder into storage and register it (inactive)."""
    manifest = (local_dir / MANIFEST).read_bytes()
    folder = f"{recs_settings.ARTIFACT_DIR.rstrip('/')}/{uuid.uuid4().hex}"
    for path in sorted(local_dir.iterdir()):
        with path.open("rb") as handle:
            saved = default_storage.save(f"{folder}/{path.name}", File(handle, name=path.name))
        if saved != f"{folder}/{path.name}":
            raise ArtifactError(f"storage renamed {path.name} to {saved}; refusing the version")
    import json

    info = json.loads(manifest)
    return ModelVersion.objects.create(
        training_run=run, artifact_path=folder, checksum=hashlib.sha256(manifest).hexdigest(),
        metrics=metrics, data_snapshot=snapshot, text_model_id=info.get("text_model_id") or "",
        n_items=int(info.get("n_items") or 0), promoted=decision.promote,
        gate_reason=decision.reason,
    )


def local_artifact_dir(version: ModelVersion) -> Path:
    """A local folder holding the version's files (storage's own path, or a downloaded copy)."""
    try:
        return Path(default_storage.path(version.artifact_path))
    except NotImplementedError:
        pass
    target = var_dir() / "artifact-cache" / version.checksum
    if (target / MANIFEST).exists():
        return target
    partial = target.with_name(target.name + f".partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    _, names = default_storage.listdir(version.artifact_path)
    for name in names:
        with default_storage.open(f"{version.artifact_path}/{name}", "rb") as src, \
                (partial / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    partial.rename(target)
    return target


def load_recommender(version: ModelVersion) -> Recommender:
    """Load and verify a version; raises ArtifactError if its files are missing or tampered."""
    directory = local_artifact_dir(version)
    manifest = directory / MANIFEST
    if not manifest.exists():
        raise ArtifactError(f"{version.label}: no manifest in {directory}")
    if hashlib.sha256(manifest.read_bytes()).hexdigest() != version.checksum:
        raise ArtifactError(f"{version.label}: manifest checksum differs from the registry's")
    return load_version(directory)


def load_active_recommender() -> Recommender | None:
    version = ModelVersion.active()
    if version is None:
        return None
    try:
        return load_recommender(version)
    except ArtifactError as exc:
        logger.error("The active model %s cannot be loaded: %s", version.label, exc)
        return None
