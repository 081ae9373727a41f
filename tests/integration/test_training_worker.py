"""End to end on the real services: a Celery worker process on Redis trains from PostgreSQL,
activates the model, and a web-side holder serves a recommendation from it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from shop_recs.jobs import start_training
from shop_recs.models import ModelVersion, TrainingRun
from shop_recs.serving import model_holder
from tests.conftest import celery_broker

pytestmark = [pytest.mark.services, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(postgres, redis_url, transactional_db, settings):
    """A real `celery -A tasks worker` on the test database, sending through Redis."""
    with start_worker(redis_url, settings) as proc:
        yield proc


@contextlib.contextmanager
def start_worker(redis_url: str, settings, **extra_env: str):
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    log_path = Path(settings.MEDIA_ROOT).parent / "worker.log"
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "recs-training",
         "--pool", "solo", "--concurrency", "1", "-l", "info", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        with celery_broker(redis_url):
            proc.log_path = log_path
            yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


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


def test_a_killed_worker_fails_the_run_once_and_keeps_the_active_model(
    postgres, redis_url, transactional_db, settings
) -> None:
    call_command("demo_shop", products=60, shoppers=40, days=20, seed=3, verbosity=0)
    call_command("recs_import_orders", verbosity=0)
    storage_root = Path(settings.MEDIA_ROOT)
    # A short visibility timeout: an unacknowledged message would come back within seconds.
    with start_worker(redis_url, settings, CELERY_VISIBILITY_TIMEOUT="2") as proc:
        first, _ = start_training(parameters={"epochs": 2, "d_model": 32})
        assert wait_for(first).status == TrainingRun.Status.SUCCEEDED
        active = ModelVersion.active()
        artifacts_before = set(storage_root.rglob("*"))
        run, _ = start_training(parameters={"epochs": 500, "patience": 500, "d_model": 32})
        deadline = time.monotonic() + 120
        while not TrainingRun.objects.get(pk=run.pk).epoch_metrics:
            assert time.monotonic() < deadline, "training never reached its first epoch"
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)  # the worker dies mid-training
        proc.wait(10)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # nobody has noticed yet
    time.sleep(3)
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "HEARTBEAT_TIMEOUT": 2}):
        from shop_recs.jobs import reap_stale_runs

        assert reap_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "heartbeat" in run.error
    assert ModelVersion.active() == active
    assert set(storage_root.rglob("*")) == artifacts_before  # no partial artifact
    # A new worker, well past the visibility timeout, is not handed the dead run again.
    with start_worker(redis_url, settings, CELERY_VISIBILITY_TIMEOUT="2") as proc:
        time.sleep(8)
        log = proc.log_path.read_text()
    assert "received" not in log
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert ModelVersion.objects.count() == 1
