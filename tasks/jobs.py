"""Celery tasks of shop-recs. `@shared_task`s, so a shop's own Celery app can autodiscover them.

Training is not retried automatically: a run that dies half-way is marked failed (by its heartbeat
going stale) and the shop owner starts another. It is acknowledged early (acks_late=False), so a
broker visibility timeout shorter than a training run cannot deliver it to a second worker.
"""

from __future__ import annotations

from celery import shared_task

from shop_recs.conf import recs_settings

TRAIN_TIME_LIMIT = recs_settings.TRAINING_TIME_LIMIT


@shared_task(
    name="shop_recs.train",
    acks_late=False,
    ignore_result=True,
    time_limit=TRAIN_TIME_LIMIT + 60,
    soft_time_limit=TRAIN_TIME_LIMIT,
)
def train(run_id: int) -> str:
    """Train, evaluate and (if it wins) activate a new model version for one TrainingRun."""
    from .training import run_training

    return run_training(run_id, task_id=train.request.id)


@shared_task(name="shop_recs.train_scheduled", ignore_result=True)
def train_scheduled() -> int | None:
    """Periodic retraining (celery beat). Does nothing if a run is already open."""
    from shop_recs.jobs import start_training

    run, created = start_training(trigger="schedule")
    return run.pk if created else None


@shared_task(name="shop_recs.reap_stale_runs", ignore_result=True)
def reap_stale_runs() -> int:
    """Mark runs whose worker died (no heartbeat) as failed."""
    from shop_recs.jobs import reap_stale_runs as reap

    return reap()


@shared_task(name="shop_recs.count_co_purchases", ignore_result=True)
def count_co_purchases() -> int:
    """Recount the products bought together (scheduled by purchases; a beat entry may add more)."""
    from shop_recs.services.copurchase import count_co_purchases as count

    return count()


@shared_task(name="shop_recs.embed_catalogue", ignore_result=True)
def embed_catalogue() -> int:
    """Embed new and changed product texts ahead of need (a beat entry runs it, e.g. hourly)."""
    from shop_recs.export import embed_catalogue as embed

    return embed()


@shared_task(name="shop_recs.precompute_for_you", ignore_result=True)
def precompute_for_you() -> int:
    """Compute the for-you lists of the recently active shoppers ahead, for the active model
    (scheduled by each activation; a beat entry may run it more often)."""
    from shop_recs.services.recommendations import precompute_for_you as precompute

    return precompute()
