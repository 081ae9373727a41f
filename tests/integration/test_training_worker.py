"""End to end on the real services: a Celery worker process on Redis trains from PostgreSQL,
activates the model, and a web-side holder serves a recommendation from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import current_app
from django.core.management import call_command
from django.db import connection

from shop_recs.jobs import start_training
from shop_recs.models import ModelVersion, TrainingRun
from shop_recs.serving import model_holder

pytestmark = [pytest.mark.services, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(postgres, redis_url, transactional_db, settings):
    """A real `celery -A tasks worker` on the test database, sending through Redis."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONUNBUFFERED": "1",
    }
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    log = open(Path(settings.MEDIA_ROOT).parent / "worker.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "recs-training",
         "--pool", "solo", "--concurrency", "1", "-l", "info", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    saved = {k: current_app.conf[k] for k in ("task_always_eager", "broker_url")}
    current_app.conf.update(task_always_eager=False, broker_url=redis_url)
    current_app.close()  # drop connections made for the old broker
    yield proc
    current_app.conf.update(saved)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    current_app.close()


def wait_for(run: TrainingRun, timeout: float = 240) -> TrainingRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if not run.is_open:
            return run
        time.sleep(1)
    raise AssertionError(f"run {run.pk} still {run.status} ({run.phase}) after {timeout} s")


def test_worker_trains_activates_and_serves(worker) -> None:
    call_command("demo_shop", products=60, shoppers=40, days=20, seed=3, verbosity=0)
    call_command("recs_import_orders", verbosity=0)
    run, created = start_training(parameters={"epochs": 3, "patience": 2, "d_model": 32})
    assert created and run.status == TrainingRun.Status.QUEUED
    run = wait_for(run)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.celery_task_id  # it went through the broker
    version = ModelVersion.objects.get(training_run=run)
    assert version.is_active
    model_holder.reset()
    loaded = model_holder.get()
    assert loaded is not None and loaded.version_id == version.pk
    assert len(loaded.recommender.recommend([loaded.recommender.item_ids[0]], k=3)) == 3
