"""The model registry: one open run, one active version, gate, cancel, heartbeat, permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from shop_recs.jobs import QueueUnavailable, cancel_training, reap_stale_runs, start_training
from shop_recs.models import ModelVersion, TrainingRun
from shop_recs.registry import promotion_gate
from tasks.training import RunReporter
from tests.conftest import celery_broker

pytestmark = pytest.mark.django_db

Status = TrainingRun.Status


@pytest.fixture
def no_worker(monkeypatch):
    """Queue runs without executing them (as if no worker had picked them up yet)."""
    monkeypatch.setattr("shop_recs.jobs._enqueue", lambda run: None)


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in ("view_trainingrun", "view_modelversion", *perms):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def version(**kwargs) -> ModelVersion:
    return ModelVersion.objects.create(artifact_path="x", checksum="0" * 64, **kwargs)


def test_promotion_gate_needs_to_beat_popularity_and_the_active_model() -> None:
    metrics = {"model": {"ndcg@10": 0.30}, "popularity": {"ndcg@10": 0.10}}
    assert promotion_gate(metrics, margin=0.0).promote
    assert not promotion_gate({**metrics, "active": {"ndcg@10": 0.31}}, margin=0.0).promote
    decision = promotion_gate({**metrics, "active": {"ndcg@10": 0.29}}, margin=0.05)
    assert not decision.promote and "active" in decision.reason
    assert not promotion_gate({"model": {"ndcg@10": 0.1}, "popularity": {"ndcg@10": 0.2}},
                              margin=0).promote


def test_two_retrain_clicks_start_one_run(no_worker) -> None:
    first, created_first = start_training()
    second, created_second = start_training()
    assert created_first and not created_second
    assert first.pk == second.pk
    assert TrainingRun.objects.count() == 1


def test_the_database_refuses_a_second_open_run(no_worker) -> None:
    start_training()
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(open_slot="training")


def test_a_finished_run_frees_the_slot(no_worker) -> None:
    run, _ = start_training()
    run.finish(Status.FAILED, error="boom")
    again, created = start_training()
    assert created and again.pk != run.pk


def test_exactly_one_active_version_and_rollback() -> None:
    v1, v2 = version(), version()
    v1.activate()
    v2.activate()
    assert list(ModelVersion.objects.filter(is_active=True)) == [v2]
    v1.activate()  # rollback
    assert ModelVersion.active() == v1
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(is_active=True)


def test_cancel_a_queued_run_closes_it(no_worker) -> None:
    run, _ = start_training()
    assert cancel_training(run)
    run.refresh_from_db()
    assert run.status == Status.CANCELLED and run.open_slot is None
    assert not cancel_training(run)


def test_cancel_a_running_run_is_seen_by_its_reporter(no_worker) -> None:
    run, _ = start_training()
    TrainingRun.objects.filter(pk=run.pk).update(status=Status.RUNNING)
    reporter = RunReporter(run.pk)
    assert not reporter.should_stop()
    cancel_training(run)
    reporter._last_write = 0  # the next check goes to the database
    assert reporter.should_stop()


def test_a_run_without_heartbeat_is_marked_failed(no_worker) -> None:
    run, _ = start_training()
    old = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(status=Status.RUNNING, heartbeat_at=old)
    fresh_active = version()
    fresh_active.activate()
    assert reap_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == Status.FAILED and "heartbeat" in run.error
    assert ModelVersion.active() == fresh_active  # the active model is untouched


def test_a_live_run_is_not_reaped(no_worker) -> None:
    run, _ = start_training()
    TrainingRun.objects.filter(pk=run.pk).update(status=Status.RUNNING,
                                                 heartbeat_at=timezone.now())
    assert reap_stale_runs() == 0


def test_unreachable_broker_says_so_and_leaves_no_open_run() -> None:
    with celery_broker("redis://127.0.0.1:1/0", broker_connection_timeout=0.5), \
            pytest.raises(QueueUnavailable, match="unreachable"):
        start_training()
    run = TrainingRun.objects.get()
    assert run.status == Status.FAILED and run.open_slot is None


class TestAdminPermissions:
    def test_staff_without_permission_cannot_retrain(self, client, no_worker) -> None:
        client.force_login(staff("viewer"))
        response = client.post(reverse("admin:shop_recs_trainingrun_retrain"))
        assert response.status_code == 403
        assert not TrainingRun.objects.exists()

    def test_retrain_button_needs_post(self, client, no_worker) -> None:
        client.force_login(staff("trainer", "retrain_model"))
        assert client.get(reverse("admin:shop_recs_trainingrun_retrain")).status_code == 405
        assert not TrainingRun.objects.exists()

    def test_staff_with_permission_starts_one_run(self, client, no_worker) -> None:
        client.force_login(staff("trainer", "retrain_model"))
        client.post(reverse("admin:shop_recs_trainingrun_retrain"))
        client.post(reverse("admin:shop_recs_trainingrun_retrain"))
        assert TrainingRun.objects.count() == 1
        page = client.get(reverse("admin:shop_recs_trainingrun_changelist"))
        assert b"Retrain now" in page.content and b"shop-recs-progress" in page.content

    def test_progress_endpoint(self, client, no_worker) -> None:
        client.force_login(staff("viewer"))
        run, _ = start_training()
        TrainingRun.objects.filter(pk=run.pk).update(progress=0.5, phase="training")
        data = client.get(reverse("admin:shop_recs_trainingrun_progress", args=[run.pk])).json()
        assert data["progress"] == 0.5 and data["phase"] == "training" and data["open"]

    def test_cancel_needs_permission(self, client, no_worker) -> None:
        run, _ = start_training()
        client.force_login(staff("viewer"))
        url = reverse("admin:shop_recs_trainingrun_cancel", args=[run.pk])
        assert client.post(url).status_code == 403
        run.refresh_from_db()
        assert run.is_open
        client.force_login(staff("trainer", "retrain_model"))
        client.post(url)
        run.refresh_from_db()
        assert run.status == Status.CANCELLED

    def test_activate_action_needs_permission(self, client) -> None:
        v1 = version()
        client.force_login(staff("viewer"))
        url = reverse("admin:shop_recs_modelversion_changelist")
        response = client.post(url, {"action": "activate_version", "_selected_action": [v1.pk]})
        assert response.status_code == 403
        assert ModelVersion.active() is None

    def test_activate_refuses_a_version_whose_files_are_missing(self, client) -> None:
        v1 = version()
        client.force_login(staff("admin", "activate_modelversion"))
        url = reverse("admin:shop_recs_modelversion_changelist")
        client.post(url, {"action": "activate_version", "_selected_action": [v1.pk]})
        assert ModelVersion.active() is None


def test_charts_render_runs_and_versions_with_metrics(client) -> None:
    run = TrainingRun.objects.create(status=Status.SUCCEEDED, epoch_metrics=[
        {"epoch": e, "loss": 1.0 / e, "metrics": {"ndcg@10": 0.01 * e}} for e in (1, 2, 3)
    ])
    for n in (0.02, 0.05):
        version(training_run=None, metrics={"model": {"ndcg@10": n, "recall@10": 2 * n},
                                            "popularity": {"ndcg@10": 0.01}})
    client.force_login(staff("viewer"))
    runs = client.get(reverse("admin:shop_recs_trainingrun_changelist"))
    assert runs.status_code == 200 and runs.content.count(b"<circle") == 3
    detail = client.get(reverse("admin:shop_recs_trainingrun_change", args=[run.pk]))
    assert detail.status_code == 200 and b"<svg" in detail.content
    versions = client.get(reverse("admin:shop_recs_modelversion_changelist"))
    assert versions.status_code == 200 and versions.content.count(b"<circle") == 4
    assert b"0.0500" in versions.content


def test_chart_text_is_escaped() -> None:
    from shop_recs.charts import line_chart

    svg = line_chart({"<script>x</script>": [(1, 0.1), (2, 0.2)]}, title="<b>t</b>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg
