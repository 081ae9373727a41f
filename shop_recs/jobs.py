"""Starting, cancelling and reaping training runs.

The plugin starts Celery jobs by task *name*, so that `tasks` depends on `shop_recs` and not the
other way round. With `CELERY_TASK_ALWAYS_EAGER` the task runs in-process (in a background thread
when SHOP_RECS["EAGER_TRAINING_IN_BACKGROUND"] is set, as in the demo, so the admin stays usable).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from celery import current_app
from django.core.cache import cache
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from .conf import recs_settings
from .models import TrainingRun

logger = logging.getLogger(__name__)

TRAIN_TASK = "shop_recs.train"
COUNT_TASK = "shop_recs.count_co_purchases"
PRECOMPUTE_TASK = "shop_recs.precompute_for_you"
_COUNT_DUE = "shop_recs:co_purchase_count_due"  # cache key: a count is already scheduled


class QueueUnavailable(RuntimeError):
    """The Celery broker could not be reached: the run was not queued."""


def _task(name: str):
    current_app.loader.import_default_modules()  # runs the host app's autodiscovery
    return current_app.tasks.get(name)


def start_training(*, user: Any = None, parameters: dict | None = None,
                   trigger: str = "manual") -> tuple[TrainingRun, bool]:
    """Queue a training run, or return the one already open. Returns (run, created)."""
    reap_stale_runs()
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                open_slot="training", started_by=user if getattr(user, "pk", None) else None,
                parameters=parameters or {}, trigger=trigger, phase="queued",
            )
    except IntegrityError:
        existing = TrainingRun.objects.filter(open_slot="training").first()
        if existing is None:  # closed in between: try once more
            return start_training(user=user, parameters=parameters, trigger=trigger)
        return existing, False
    _enqueue(run)
    return run, True


def _enqueue(run: TrainingRun) -> None:
    task = _task(TRAIN_TASK)
    eager = bool(current_app.conf.task_always_eager)
    if eager and task is not None:
        if recs_settings.EAGER_TRAINING_IN_BACKGROUND:
            threading.Thread(target=_run_eager, args=(task, run.pk), daemon=True,
                             name=f"shop-recs-train-{run.pk}").start()
        else:
            task.apply(args=[run.pk])
        return
    try:
        result = current_app.send_task(
            TRAIN_TASK, args=[run.pk], queue=recs_settings.TRAINING_QUEUE,
            retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                      "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # kombu raises OperationalError and friends
        run.finish(TrainingRun.Status.FAILED, error=f"The task queue is unreachable: {exc}")
        raise QueueUnavailable(
            "The training queue (Celery broker) is unreachable; the run was not started. "
            "Check that the broker is running and CELERY_BROKER_URL points to it."
        ) from exc
    TrainingRun.objects.filter(pk=run.pk).update(celery_task_id=result.id or "")


def schedule_co_purchase_count() -> None:
    """After a purchase: count co-purchases CO_PURCHASE_COUNT_DELAY seconds from now, unless a
    count is already due, so that a busy shop counts at most once per delay. With eager Celery
    (the demo) the count runs at once, after the purchase's transaction commits.

    Never raises: the purchase is stored whatever happens here. An unreachable cache or broker
    is logged; a purchase after the delay tries again (so an outage slows no checkout twice)."""
    delay = recs_settings.CO_PURCHASE_COUNT_DELAY
    if delay is None:
        return
    try:
        if not cache.add(_COUNT_DUE, True, timeout=delay):
            return
    except Exception as exc:
        logger.warning("shop_recs: no co-purchase count scheduled, cache unavailable: %s", exc)
        return
    transaction.on_commit(lambda: _send_count(delay))


def _send_count(delay: int) -> None:
    try:
        task = _task(COUNT_TASK)
        if current_app.conf.task_always_eager and task is not None:
            task.apply()
        else:
            current_app.send_task(COUNT_TASK, countdown=delay, retry=False)
    except Exception as exc:  # kombu's OperationalError and friends; a failed eager count
        logger.warning("shop_recs: the co-purchase count could not be started: %s", exc)


def schedule_precompute() -> None:
    """After a model activation: compute the active shoppers' for-you lists ahead (in-process
    with eager Celery), once the activation has committed. Never raises: without these lists
    each request computes its own, as it would anyway."""
    if not recs_settings.PRECOMPUTE_ACTIVE_DAYS:
        return
    transaction.on_commit(_send_precompute)


def _send_precompute() -> None:
    try:
        task = _task(PRECOMPUTE_TASK)
        if current_app.conf.task_always_eager and task is not None:
            task.apply()
        else:
            current_app.send_task(PRECOMPUTE_TASK, retry=False)
    except Exception as exc:  # kombu's OperationalError and friends; a failed eager run
        logger.warning("shop_recs: the for-you lists could not be computed ahead: %s", exc)


def _run_eager(task, run_id: int) -> None:
    try:
        task.apply(args=[run_id])
    finally:
        connections.close_all()  # this thread ends: its connections would linger (CONN_MAX_AGE)


def cancel_training(run: TrainingRun) -> bool:
    """Ask an open run to stop. A queued run is closed at once; a running one stops at its next
    progress report. Returns False when the run was not open."""
    run.refresh_from_db()
    if not run.is_open:
        return False
    if run.status == TrainingRun.Status.QUEUED:
        if run.celery_task_id:
            current_app.control.revoke(run.celery_task_id)
        run.finish(TrainingRun.Status.CANCELLED, message="Cancelled before it started.")
    else:
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    return True


def reap_stale_runs() -> int:
    """Mark runs whose worker stopped sending heartbeats as failed (the worker died)."""
    cutoff = timezone.now() - timedelta(seconds=recs_settings.HEARTBEAT_TIMEOUT)
    stale = TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff
    ) | TrainingRun.objects.filter(
        status=TrainingRun.Status.QUEUED, created_at__lt=cutoff - timedelta(days=1)
    )
    count = 0
    for run in stale:
        run.finish(TrainingRun.Status.FAILED, error=(
            "The worker stopped reporting (no heartbeat for "
            f"{recs_settings.HEARTBEAT_TIMEOUT} s): it probably died. "
            "The active model is unchanged."
        ))
        logger.warning("Training run %s marked failed: heartbeat timeout", run.pk)
        count += 1
    return count
