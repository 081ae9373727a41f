"""The training job, read top to bottom: claim the run, export, train, evaluate, gate, activate.

Every step reports to the TrainingRun row (phase, progress, per-epoch metrics, heartbeat), so the
admin can show it live. Whatever fails, the run ends closed with a message and the active model
is untouched: a new version is stored complete (checksummed) before it can be activated.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.db.models import F
from django.utils import timezone

from recsys_core.training import Progress, TrainingCancelled
from shop_recs.conf import recs_settings
from shop_recs.export import TrainingDataError, export_training_data
from shop_recs.jobs import schedule_precompute
from shop_recs.models import TrainingRun
from shop_recs.registry import (
    load_active_recommender,
    promotion_gate,
    store_version,
    text_encoder,
    train_config_for,
)
from shop_recs.services.copurchase import count_co_purchases

logger = logging.getLogger("shop_recs.training")

Status = TrainingRun.Status


class RunReporter:
    """Progress callback for recsys_core: writes phase, progress, metrics and heartbeat to the run.

    Database writes are throttled (at most one a second, except epoch ends) and each one also
    answers "was cancel requested?" so cancelling needs no extra query.
    """

    def __init__(self, run_id: int, *, start: float = 0.05, end: float = 0.95) -> None:
        self.run_id, self.start, self.end = run_id, start, end
        self._last_write = 0.0
        self._cancel = False

    def phase(self, name: str, fraction: float) -> None:
        self._write(phase=name, progress=fraction, force=True)

    def __call__(self, progress: Progress) -> None:
        fraction = self.start + (self.end - self.start) * progress.fraction
        epoch_done = progress.phase == "train" and progress.metrics is not None
        self._write(phase=progress.phase, progress=fraction, force=epoch_done,
                    epoch={"epoch": progress.epoch, "loss": progress.loss,
                           "metrics": progress.metrics} if epoch_done else None)

    def should_stop(self) -> bool:
        if time.monotonic() - self._last_write > 2.0:
            self._write(force=True)
        return self._cancel

    def _write(self, *, phase: str | None = None, progress: float | None = None,
               force: bool = False, epoch: dict | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 1.0:
            return
        self._last_write = now
        run = TrainingRun.objects.only("epoch_metrics", "cancel_requested").get(pk=self.run_id)
        fields: dict = {"heartbeat_at": timezone.now()}
        if phase is not None:
            fields["phase"] = phase[:64]
        if progress is not None:
            fields["progress"] = round(min(max(progress, 0.0), 1.0), 4)
        if epoch is not None:
            fields["epoch_metrics"] = [*run.epoch_metrics, epoch]
        TrainingRun.objects.filter(pk=self.run_id).update(**fields)
        self._cancel = run.cancel_requested


def claim(run_id: int, task_id: str | None) -> bool:
    """queued -> running, atomically: a second delivery of the same run finds nothing to claim."""
    now = timezone.now()
    return bool(
        TrainingRun.objects.filter(pk=run_id, status=Status.QUEUED, cancel_requested=False).update(
            status=Status.RUNNING, started_at=now, heartbeat_at=now, phase="starting",
            celery_task_id=task_id or F("celery_task_id"),
        )
    )


def run_training(run_id: int, task_id: str | None = None) -> str:
    if not claim(run_id, task_id):
        logger.info("Training run %s is not queued any more: nothing to do", run_id)
        return "skipped"
    run = TrainingRun.objects.get(pk=run_id)
    reporter = RunReporter(run_id)
    try:
        reporter.phase("exporting events", 0.01)
        snapshot = export_training_data(window_days=recs_settings.TRAINING_WINDOW_DAYS)
        TrainingRun.objects.filter(pk=run_id).update(data_snapshot=snapshot.counts)
        config = train_config_for(run.parameters)
        active = load_active_recommender()
        with tempfile.TemporaryDirectory(prefix="shop-recs-train-") as tmp:
            from recsys_core.pipeline import train_version

            result = train_version(
                snapshot.data,
                model_config_overrides=config.model,
                train_config=config.train,
                text_encoder=text_encoder(),
                output_dir=Path(tmp) / "artifact",
                progress=reporter,
                should_stop=reporter.should_stop,
                compare_with={"active": active} if active is not None else None,
            )
            reporter.phase("evaluating", 0.96)
            decision = promotion_gate(result.metrics, margin=recs_settings.PROMOTION_MARGIN)
            reporter.phase("storing the model", 0.97)
            version = store_version(run, Path(tmp) / "artifact", result.metrics, snapshot.counts,
                                    decision)
        if decision.promote:
            version.activate()
        reporter.phase("counting co-purchases", 0.98)
        _count_co_purchases()
        run.refresh_from_db()
        run.finish(Status.SUCCEEDED, message=f"{version.label}: {decision.reason}")
        logger.info("Training run %s done: %s", run_id, decision.reason)
        if decision.promote:
            schedule_precompute()
        return "succeeded"
    except TrainingCancelled:
        run.finish(Status.CANCELLED, message="Cancelled by staff; the active model is unchanged.")
        return "cancelled"
    except TrainingDataError as exc:
        run.finish(Status.FAILED, error=str(exc))
        return "failed"
    except SoftTimeLimitExceeded:
        run.finish(Status.FAILED, error=(
            f"Training exceeded its time limit ({recs_settings.TRAINING_TIME_LIMIT} s); the "
            "active model is unchanged. Raise SHOP_RECS['TRAINING_TIME_LIMIT'] or train fewer "
            "epochs."
        ))
        return "failed"
    except Exception as exc:
        logger.exception("Training run %s failed", run_id)
        run.finish(Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return "failed"


def _count_co_purchases() -> None:
    """The bought-together counts, renewed with each run; a failure here fails no run."""
    try:
        count_co_purchases()
    except Exception:
        logger.exception("Counting co-purchases failed; the earlier counts are kept")
