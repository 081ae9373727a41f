"""The training job end to end (eager Celery, SQLite): export, train, gate, activate, serve."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command

from shop_recs.models import CoPurchase, ModelVersion, TrainingRun
from shop_recs.services import precomputed
from shop_recs.serving import model_holder

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

Status = TrainingRun.Status
FAST = {"epochs": 3, "patience": 2, "d_model": 32}


@pytest.fixture
def small_shop():
    call_command("demo_shop", products=60, shoppers=40, days=20, seed=7, verbosity=0)
    call_command("recs_import_orders", verbosity=0)
    model_holder.reset()
    yield
    model_holder.reset()


def train(**parameters) -> TrainingRun:
    from shop_recs.jobs import start_training

    run, created = start_training(parameters={**FAST, **parameters})
    assert created
    run.refresh_from_db()
    return run


def test_a_run_trains_activates_and_serves(small_shop, django_capture_on_commit_callbacks) -> None:
    CoPurchase.objects.all().delete()  # counted by the import: the run counts them anew
    cache.clear()
    with django_capture_on_commit_callbacks(execute=True):
        run = train()
    assert run.status == Status.SUCCEEDED, run.error
    assert run.progress == 1.0 and run.open_slot is None
    assert run.data_snapshot["events"] > 0 and run.data_snapshot["users"] == 40
    assert [e["epoch"] for e in run.epoch_metrics] == [1, 2, 3]
    version = ModelVersion.objects.get(training_run=run)
    assert version.is_active and version.promoted
    assert version.metrics["model"]["ndcg@10"] > version.metrics["popularity"]["ndcg@10"]
    loaded = model_holder.get()
    assert loaded is not None and loaded.version_id == version.pk
    history = [loaded.recommender.item_ids[0]]
    recs = loaded.recommender.recommend(history, k=5)
    assert len(recs) == 5 and history[0] not in {r.item for r in recs}
    assert CoPurchase.objects.exists()
    # The activation computed the shoppers' for-you lists ahead.
    job = precomputed.last_job()
    assert job is not None and job.version == version.label and job.finished is not None
    assert job.shoppers == 40 and 0 < job.stored <= 40


def test_a_second_version_must_beat_the_active_one(small_shop) -> None:
    first = train()
    assert ModelVersion.objects.get(training_run=first).is_active
    # An untrained rival (one epoch on a tiny learning rate) cannot beat the active model.
    second = train(epochs=1, lr=1e-6)
    assert second.status == Status.SUCCEEDED
    rival = ModelVersion.objects.get(training_run=second)
    assert not rival.is_active and "kept inactive" in rival.gate_reason
    assert ModelVersion.active().training_run_id == first.pk


def test_a_failing_run_leaves_the_active_model_serving(small_shop, monkeypatch) -> None:
    train()
    active = ModelVersion.active()

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("recsys_core.pipeline.train_version", explode)
    failed = train()
    assert failed.status == Status.FAILED and "disk full" in failed.error
    assert ModelVersion.active() == active
    assert ModelVersion.objects.count() == 1


def test_an_empty_shop_fails_with_a_clear_message(db) -> None:
    run = train()
    assert run.status == Status.FAILED
    assert "Not enough data to train yet" in run.error and "Traceback" not in run.error


def test_a_corrupt_new_version_is_not_served(small_shop, settings) -> None:
    train()
    good = model_holder.get()
    assert good is not None
    from shop_recs.registry import local_artifact_dir

    broken = ModelVersion.objects.create(artifact_path=good and ModelVersion.active().artifact_path,
                                         checksum="f" * 64)
    broken.activate()
    model_holder._checked_at = float("-inf")
    still = model_holder.get()
    assert still is not None and still.version_id == good.version_id
    assert local_artifact_dir(broken).exists()


def test_recs_train_command_waits_and_reports(small_shop, capsys) -> None:
    call_command("recs_train", wait=True, param=["epochs=2", "d_model=32"])
    out = capsys.readouterr().out
    assert "succeeded" in out
    call_command("recs_status")
    out = capsys.readouterr().out
    assert "Active model: v" in out and "Co-purchases: " in out and "pairs, last changed 20" in out


def test_co_purchases_are_counted_on_demand(small_shop, capsys) -> None:
    CoPurchase.objects.all().delete()
    call_command("recs_status")
    assert "Co-purchases: not counted yet" in capsys.readouterr().out
    call_command("recs_co_purchases")
    assert f"{CoPurchase.objects.count()} co-purchase pairs stored" in capsys.readouterr().out
    assert CoPurchase.objects.count() > 0
