"""Events through the REST API on PostgreSQL: never lost, never doubled.

Requests run in threads, each with its own database connection (as web workers have), through
the whole stack: authentication, throttling, validation, ``bulk_record_events`` and the unique
index on the idempotency key. The last test posts events while a training run is in progress and
finds every one of them in the next run's export.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recsys_core.data import EVENT_KINDS
from shop_recs.export import export_training_data
from shop_recs.jobs import cancel_training, start_training
from shop_recs.models import Event, TrainingRun
from tests.integration.test_events_postgres import in_threads

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
EVENTS = "/recs/api/events/"
NO_THROTTLING = {**settings.REST_FRAMEWORK,
                 "DEFAULT_THROTTLE_RATES": {"shop_recs": None, "shop_recs_events": None}}


@pytest.fixture(autouse=True)
def no_throttling():
    with override_settings(REST_FRAMEWORK=NO_THROTTLING):
        yield


@pytest.fixture
def token(postgres, recs_shop) -> str:
    return Token.objects.create(user=recs_shop.alice).key


def post(token: str, *events: dict[str, Any]) -> tuple[int, dict]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(EVENTS, {"events": list(events)}, format="json")
    return response.status_code, response.json()


def view(product: str, key: str | None = None, **extra: Any) -> dict[str, Any]:
    event = {"kind": "view", "product": product, **extra}
    if key is not None:
        event["idempotency_key"] = key
    return event


def test_a_resent_key_stores_one_row_and_is_accepted_both_times(token) -> None:
    event = view("11", "retry-1", timestamp=timezone.now().isoformat())
    first_code, first = post(token, event)
    second_code, second = post(token, event)
    assert (first_code, second_code) == (200, 200)
    assert first["results"][0]["status"] == "stored"
    assert second["results"][0]["status"] == "duplicate"
    assert first["stored"] + first["duplicates"] == second["stored"] + second["duplicates"] == 1
    assert Event.objects.filter(idempotency_key="retry-1").count() == 1


def test_concurrent_retries_store_each_key_once(token) -> None:
    """Eight clients send the same batch of 20 keyed events at the same moment."""
    stamp = timezone.now().isoformat()
    batch = [view(str(11 + i % 6), f"race-{i}", timestamp=stamp) for i in range(20)]
    answers = in_threads(8, lambda i: post(token, *batch))
    assert all(not isinstance(a, Exception) for a in answers), answers
    assert {code for code, _ in answers} == {200}
    for _, body in answers:
        assert body["conflicts"] == body["invalid"] == 0
        assert body["stored"] + body["duplicates"] == 20
    counts = Counter(Event.objects.filter(idempotency_key__startswith="race-")
                     .values_list("idempotency_key", flat=True))
    assert len(counts) == 20 and set(counts.values()) == {1}


def test_a_reused_key_with_a_different_body_is_a_409_in_json(token) -> None:
    assert post(token, view("11", "k-9"))[0] == 200
    code, body = post(token, view("12", "k-9"))
    assert code == 409
    result = body["results"][0]
    assert result["status"] == "conflict" and "already used" in str(result["errors"])
    assert Event.objects.get(idempotency_key="k-9").product_id == "11"


def test_racing_different_bodies_on_one_key_store_exactly_one(token) -> None:
    answers = in_threads(6, lambda i: post(token, view(str(11 + i), "contested")))
    assert all(not isinstance(a, Exception) for a in answers), answers
    codes = Counter(code for code, _ in answers)
    stored = Event.objects.get(idempotency_key="contested")
    assert codes[200] == 1 and codes[409] == 5
    winner = next(body for code, body in answers if code == 200)
    assert winner["results"][0]["status"] == "stored"
    assert stored.product_id in {str(11 + i) for i in range(6)}


def test_a_mixed_batch_keeps_the_valid_events_and_reports_each_invalid_one(token) -> None:
    code, body = post(
        token,
        view("11", "mixed-ok-1"),
        view("11", timestamp="31/12/2024 noon"),  # not ISO 8601
        view("11", timestamp="2999-01-01T00:00:00+00:00"),  # in the future
        view("99999"),  # no such product
        view("12", context={"blob": "x" * 10_000}),  # oversized context
        view("13", "mixed-ok-2"),
    )
    assert code == 200
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["stored", "invalid", "invalid", "invalid", "invalid", "stored"]
    messages = [str(r.get("errors", "")) for r in body["results"]]
    assert "ISO 8601" in messages[1] and "future" in messages[2]
    assert "Unknown product" in messages[3] and "bytes" in messages[4]
    assert set(Event.objects.values_list("idempotency_key", flat=True)) == {
        "mixed-ok-1", "mixed-ok-2"}


def test_events_that_arrive_during_training_are_kept_for_the_next_run(postgres, settings) -> None:
    call_command("demo_shop", products=40, shoppers=30, days=10, seed=5, verbosity=0)
    call_command("recs_import_orders", verbosity=0)
    settings.SHOP_RECS = {**settings.SHOP_RECS, "EAGER_TRAINING_IN_BACKGROUND": True}
    from django.contrib.auth.models import User

    from demo.models import Product

    users = list(User.objects.order_by("pk")[:4])
    tokens = [Token.objects.create(user=user).key for user in users]
    products = [str(pk) for pk in Product.objects.order_by("pk").values_list("pk", flat=True)]
    run, _ = start_training(parameters={"epochs": 1000, "patience": 1000, "d_model": 16,
                                        "use_text": False})
    try:
        deadline = time.monotonic() + 120
        while not TrainingRun.objects.get(pk=run.pk).epoch_metrics:
            assert time.monotonic() < deadline, "training never reached its first epoch"
            time.sleep(0.2)
        before = Event.objects.count()

        def send(i: int) -> list[int]:
            return [post(tokens[i], *[view(products[(i * 7 + b * 5 + j) % len(products)],
                                           f"during-{i}-{b}-{j}") for j in range(25)])[0]
                    for b in range(4)]

        codes = in_threads(len(tokens), send)
        run.refresh_from_db()
        assert run.status == TrainingRun.Status.RUNNING  # all of it arrived mid-training
    finally:
        cancel_training(run)
        deadline = time.monotonic() + 60
        while TrainingRun.objects.get(pk=run.pk).is_open and time.monotonic() < deadline:
            time.sleep(0.2)
    assert codes == [[200] * 4] * len(tokens)
    sent = 4 * 4 * 25
    assert Event.objects.count() == before + sent
    assert Event.objects.filter(idempotency_key__startswith="during-").count() == sent
    # The next run's export reads every one of them (and everything that was there before).
    next_export = export_training_data().counts["events"]
    assert next_export == Event.objects.filter(kind__in=EVENT_KINDS).exclude(product_id="").count()
    assert next_export >= sent
