"""record_event / bulk_record_events: validation, idempotency, and what a batch reports."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shop_recs.events import (
    EventConflict,
    EventError,
    bulk_record_events,
    record_event,
    request_shopper,
)
from shop_recs.models import Event, EventKind


def test_a_view_is_stored_with_everything_given(shop) -> None:
    when = timezone.now() - timedelta(hours=1)
    event = record_event(
        kind="view", product=shop.green_tea, user=shop.alice, timestamp=when,
        context={"placement": "home"},
    )
    stored = Event.objects.get()
    assert stored.pk == event.pk
    assert (stored.kind, stored.product_id, stored.user, stored.timestamp, stored.context) == (
        EventKind.VIEW, str(shop.green_tea.pk), shop.alice, when, {"placement": "home"}
    )


def test_product_and_user_may_be_given_by_primary_key(shop) -> None:
    event = record_event(kind="add_to_cart", product=str(shop.black_tea.pk), user=shop.bob.pk,
                         quantity=3)
    event.refresh_from_db()
    assert (event.product_id, event.user_id, event.quantity) == (
        str(shop.black_tea.pk), shop.bob.pk, 3
    )


def test_a_guest_event_and_the_default_time(shop) -> None:
    before = timezone.now()
    event = record_event(kind="view", product=shop.green_tea, session_key="guest-session")
    assert event.user is None and event.session_key == "guest-session"
    assert before <= event.timestamp <= timezone.now()


def test_a_search_keeps_its_query_and_needs_no_product(shop) -> None:
    event = record_event(kind="search", query="  green tea ", user=shop.alice)
    assert (event.query, event.product_id) == ("green tea", "")


def test_an_impression_needs_no_product(shop) -> None:
    event = record_event(
        kind="rec_impression", user=shop.alice,
        context={"placement": "product_page", "model_version": "v3", "items": ["1", "2"]},
    )
    assert Event.objects.get(pk=event.pk).context["model_version"] == "v3"


def test_event_errors_are_value_errors() -> None:
    assert issubclass(EventError, ValueError) and issubclass(EventConflict, EventError)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"kind": "like"}, "Unknown event kind 'like'; expected one of: view, add_to_cart"),
        ({"product": 999999}, "Unknown product '999999': no demo.Product has that primary key"),
        ({"product": "green-tea"}, "Unknown product: 'green-tea' is not a valid demo.Product"),
        ({"product": None}, "A view event needs a product"),
        ({"user": None}, "needs a user or a guest's session_key; neither was given"),
        ({"user": AnonymousUser()}, "needs a user or a guest's session_key"),
        ({"user": 999999}, "Unknown user 999999"),
        ({"user": "alice"}, "'alice' is not a valid user primary key"),
        ({"kind": "search", "product": None}, "A search event needs the query text"),
        ({"kind": "search", "query": "   "}, "A search event needs the query text"),
        ({"query": "q" * 501}, "query is 501 characters long; at most 500"),
        ({"user": None, "session_key": "s" * 65}, "session_key is 65 characters long"),
        ({"context": ["placement"]}, "context must be an object"),
        ({"context": {"when": datetime(2025, 1, 1)}}, "context must be JSON-serialisable"),
        ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not an ISO 8601"),
        ({"timestamp": datetime(2025, 1, 1)}, "timestamp has no time zone"),
        ({"timestamp": 1735689600}, "timestamp must be a datetime, not int"),
        ({"quantity": 0}, "quantity must be a whole number of at least 1"),
        ({"quantity": "2"}, "quantity must be a whole number"),
        ({"quantity": True}, "quantity must be a whole number"),
        ({"idempotency_key": 42}, "idempotency_key must be text"),
    ],
)
def test_bad_input_is_refused_with_what_is_wrong(shop, overrides: dict, expected: str) -> None:
    fields = {"kind": "view", "product": shop.green_tea, "user": shop.alice, **overrides}
    with pytest.raises(EventError) as caught:
        record_event(**fields)
    assert expected in str(caught.value)
    assert not Event.objects.exists()


def test_a_product_of_another_model_is_refused(shop) -> None:
    with pytest.raises(EventError, match="is a demo.Category, not a demo.Product"):
        record_event(kind="view", product=shop.tea, user=shop.alice)


def test_a_future_timestamp_is_refused_but_small_clock_skew_is_not(shop) -> None:
    with pytest.raises(EventError, match="is in the future"):
        record_event(kind="view", product=shop.green_tea, user=shop.alice,
                     timestamp=timezone.now() + timedelta(hours=1))
    record_event(kind="view", product=shop.green_tea, user=shop.alice,
                 timestamp=timezone.now() + timedelta(minutes=1))


def test_iso_timestamps_are_accepted(shop) -> None:
    event = record_event(kind="view", product=shop.green_tea, user=shop.alice,
                         timestamp="2025-03-01T10:30:00+01:00")
    assert event.timestamp == datetime.fromisoformat("2025-03-01T09:30:00+00:00")


@override_settings(SHOP_RECS={**settings.SHOP_RECS, "MAX_EVENT_CONTEXT_BYTES": 64})
def test_context_is_capped_in_bytes(shop) -> None:
    def context_of_size(size: int) -> dict:
        empty = len(json.dumps({"q": ""}, separators=(",", ":")))
        return {"q": "é" * ((size - empty) // 2)}  # two bytes per character in UTF-8

    record_event(kind="view", product=shop.green_tea, user=shop.alice, context=context_of_size(64))
    with pytest.raises(EventError, match="context is 66 bytes as JSON; at most 64"):
        record_event(kind="view", product=shop.green_tea, user=shop.alice,
                     context=context_of_size(66))


def test_the_same_key_twice_stores_one_event(shop) -> None:
    fields = {"kind": "view", "product": shop.green_tea, "user": shop.alice,
              "idempotency_key": "tab-1:view:17"}
    first = record_event(**fields)
    second = record_event(**fields)
    assert first.pk == second.pk
    assert Event.objects.count() == 1


def test_a_retry_without_a_timestamp_is_still_the_same_event(shop) -> None:
    first = record_event(kind="view", product=shop.green_tea, session_key="s1",
                         idempotency_key="k")
    Event.objects.filter(pk=first.pk).update(timestamp=timezone.now() - timedelta(seconds=30))
    assert record_event(kind="view", product=shop.green_tea, session_key="s1",
                        idempotency_key="k").pk == first.pk


@pytest.mark.parametrize(
    "change",
    [{"product": "black"}, {"quantity": 2}, {"context": {"placement": "x"}},
     {"timestamp": "2025-01-01T00:00:00Z"}],
)
def test_the_same_key_with_a_different_body_is_a_conflict(shop, change: dict) -> None:
    fields = {"kind": "add_to_cart", "product": shop.green_tea, "user": shop.alice,
              "idempotency_key": "cart-1"}
    original = record_event(**fields)
    if change.get("product") == "black":
        change = {"product": shop.black_tea}
    with pytest.raises(EventConflict, match="'cart-1' was already used for a different event"):
        record_event(**{**fields, **change})
    assert list(Event.objects.all()) == [original]


# --- bulk_record_events -----------------------------------------------------------------------


def test_a_mixed_batch_keeps_the_valid_events_and_reports_each_other_one(shop) -> None:
    record_event(kind="view", product=shop.green_tea, user=shop.alice, idempotency_key="old")
    green, black = shop.green_tea.pk, shop.black_tea.pk
    result = bulk_record_events([
        {"kind": "view", "product": green, "user": shop.alice.pk},  # 0 stored
        {"kind": "view", "product": 999999, "user": shop.alice.pk},  # 1 unknown product
        {"kind": "view", "product": green, "user": shop.alice, "idempotency_key": "old"},  # 2 dup
        {"kind": "view", "product": black, "user": shop.alice, "idempotency_key": "old"},  # 3
        {"kind": "purchase", "product": black, "user": shop.bob, "idempotency_key": "new"},  # 4
        {"kind": "purchase", "product": black, "user": shop.bob, "idempotency_key": "new"},  # 5
        {"kind": "purchase", "product": green, "user": shop.bob, "idempotency_key": "new"},  # 6
        {"kind": "view", "product": green, "user": 999999},  # 7 unknown user
        {"kind": "view", "product": green, "session_key": "g", "timestamp": "soon"},  # 8
        {"kind": "view", "product": green, "session_key": "g", "colour": "red"},  # 9
        "view",  # 10
        {"product": green, "session_key": "g"},  # 11 no kind
        {"kind": "search", "query": "oolong", "session_key": "g"},  # 12 stored
    ])
    assert [item.status for item in result.items] == [
        "stored", "invalid", "duplicate", "conflict", "stored", "duplicate", "conflict",
        "invalid", "invalid", "invalid", "invalid", "invalid", "stored",
    ]
    errors = result.errors()
    assert "Unknown product '999999'" in errors[1]
    assert "'old' was already used for a different event" in errors[3]
    assert "'new' was already used" in errors[6]
    assert "Unknown user 999999" in errors[7]
    assert "not an ISO 8601" in errors[8]
    assert "Unknown field(s) 'colour'" in errors[9]
    assert "must be an object of fields, not str" in errors[10]
    assert "Missing field 'kind'" in errors[11]
    assert (result.stored, result.duplicates, result.conflicts, result.invalid) == (3, 2, 2, 6)
    assert Event.objects.count() == 4  # the earlier one and the three stored
    assert Event.objects.get(idempotency_key="new").product_id == str(black)


def test_validate_products_false_trusts_the_caller(shop) -> None:
    result = bulk_record_events(
        [{"kind": "view", "product": 999999, "user": shop.alice}], validate_products=False
    )
    assert result.stored == 1 and Event.objects.get().product_id == "999999"


def test_known_products_are_not_looked_up_and_the_others_still_are(shop) -> None:
    """The REST batch passes the catalogue snapshot's ids: a batch of known products costs no
    product query, and an unknown one is still refused."""
    pid = str(shop.green_tea.pk)
    events = [{"kind": "view", "product": pid, "user": shop.alice}]
    with CaptureQueriesContext(connection) as queries:
        assert bulk_record_events(events, known_products={pid}).stored == 1
    assert not [q["sql"] for q in queries.captured_queries if "demo_product" in q["sql"]]
    result = bulk_record_events(events + [{"kind": "view", "product": "999999",
                                           "user": shop.alice}], known_products={pid})
    assert (result.stored, result.invalid) == (1, 1)
    assert "Unknown product '999999'" in result.errors()[1]


def test_a_large_batch_is_not_a_query_per_event(shop, django_assert_max_num_queries) -> None:
    events = [
        {"kind": "view", "product": shop.green_tea.pk, "user": shop.alice.pk,
         "idempotency_key": f"k{i}" if i % 2 else None}
        for i in range(3000)
    ]
    # Look-ups in chunks of 900 ids, inserts in batches (99 rows on SQLite, 1000 on PostgreSQL).
    with django_assert_max_num_queries(45):
        result = bulk_record_events(events)
    assert result.stored == 3000
    assert Event.objects.count() == 3000
    again = bulk_record_events(events[:10])
    assert (again.stored, again.duplicates) == (5, 5)  # unkeyed events are new events


# --- who is shopping -------------------------------------------------------------------------


def test_request_shopper_of_a_signed_in_user(shop) -> None:
    request = RequestFactory().get("/")
    request.user, request.session = shop.alice, SessionStore()
    assert request_shopper(request) == {"user": shop.alice, "session_key": None}


def test_request_shopper_gives_a_new_guest_a_session(db) -> None:
    request = RequestFactory().get("/")
    request.user, request.session = AnonymousUser(), SessionStore()
    shopper = request_shopper(request)
    assert shopper["user"] is None and shopper["session_key"]
    assert request.session.modified  # the middleware will send the cookie
    assert SessionStore().exists(shopper["session_key"])
    assert request_shopper(request)["session_key"] == shopper["session_key"]
