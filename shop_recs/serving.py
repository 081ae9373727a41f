"""The active model, held in memory by each web process and swapped when another is activated.

At most every MODEL_RELOAD_INTERVAL seconds a request asks the database which version is active
(one indexed query). When it changed, the new version is loaded and verified before it replaces
the old one; if it fails to load, the process keeps serving the version it has and logs why.
After a load the process freezes its long-lived objects for the garbage collector
(SERVING_GC_FREEZE), so that full collections no longer walk them while requests wait.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass

import torch
from threadpoolctl import threadpool_limits

from recsys_core.artifacts import ArtifactError
from recsys_core.inference import Recommender

from .conf import recs_settings
from .models import ModelVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version_id: int
    label: str
    recommender: Recommender
    # Which products added since training are placed in `recommender` (a digest; "" for none):
    # lists cached across processes are keyed by it (services.new_products).
    placement: str = ""


class ModelHolder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None
        self._checked_at = float("-inf")
        self._failed_ids: set[int] = set()

    def get(self) -> LoadedModel | None:
        """The model to serve with, or None when there is none (callers fall back)."""
        if time.monotonic() - self._checked_at >= recs_settings.MODEL_RELOAD_INTERVAL:
            self.refresh()
        return self._loaded

    def refresh(self) -> None:
        with self._lock:
            self._checked_at = time.monotonic()
            active = ModelVersion.objects.filter(is_active=True).only(
                "id", "artifact_path", "checksum"
            ).first()
            if active is None:
                self._loaded = None
                return
            if self._loaded is not None and self._loaded.version_id == active.pk:
                return
            if active.pk in self._failed_ids:
                return
            from .registry import load_recommender

            try:
                recommender = load_recommender(active)
            except (ArtifactError, OSError, ValueError) as exc:
                self._failed_ids.add(active.pk)
                logger.error(
                    "Model %s could not be loaded (%s); still serving %s", active.label, exc,
                    self._loaded.label if self._loaded else "the fallback",
                )
                return
            self._loaded = LoadedModel(active.pk, active.label, recommender)
            logger.info("Serving model %s", active.label)
            _limit_threads(recs_settings.SERVING_THREADS)
            if recs_settings.SERVING_GC_FREEZE:
                freeze_long_lived_objects()

    def reset(self) -> None:
        """Forget the loaded model (tests; or after deleting versions)."""
        with self._lock:
            self._loaded, self._checked_at = None, float("-inf")
            self._failed_ids.clear()


def _limit_threads(threads: int | None) -> None:
    """Serve on ``threads`` torch and BLAS threads (numpy's similar-item products use BLAS)."""
    if not threads:
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


def freeze_long_lived_objects() -> None:
    """Collect, then move every object alive into the collector's permanent generation.

    A serving process holds many long-lived container objects (Django, torch, the model), and
    every full collection walked all of them while the requests behind it waited
    (``python -m benchmarks.serving`` times one such collection with and without freezing).
    Unfreezing first lets the collection free the reference cycles of a model that was just
    replaced, so swapping versions leaks nothing.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


model_holder = ModelHolder()
