"""The history query every recommendation request runs, as PostgreSQL plans it.

A guest's history is read by session key. When the table's statistics were taken while every
event had a user (a shop's first days of signed-in traffic, an import of order history), the
planner estimates "user IS NULL" at one row, and it used to read every guest event in the table
through the user index to find the session's few: a cost that grows with the guest traffic
until the next ANALYZE.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection

from shop_recs.models import Event
from shop_recs.services.shopper import Shopper, _history_rows, _history_sql

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SIGNED_IN_EVENTS = 60_000
GUEST_EVENTS = 20_000
USERS = 5_000


def insert_events(*, guests: bool, count: int, users: list[int]) -> None:
    """`count` view events in one statement: of signed-in users, each user's together (as an
    import writes them), or of guests (one session per ten events)."""
    who = ("NULL", "'guest-' || (n / 10)") if guests else (
        f"(ARRAY{users})[1 + (n - 1) * {len(users)} / {count}]", "''")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Event._meta.db_table} (user_id, session_key, product_id, kind, "
            "timestamp, quantity, query, context, request_hash) "
            f"SELECT {who[0]}, {who[1]}, (n %% 500)::text, 'view', "
            "now() - n * interval '1 second', 1, '', '{}', '' "
            "FROM generate_series(1, %s) AS n", [count])


def plan(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_guest_history_is_read_by_session_with_stale_statistics(postgres) -> None:
    users = [user.pk for user in User.objects.bulk_create(
        User(username=f"shopper-{i}") for i in range(USERS))]
    insert_events(guests=False, count=SIGNED_IN_EVENTS, users=users)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Event._meta.db_table}")  # no guest event yet
    insert_events(guests=True, count=GUEST_EVENTS, users=users)  # not analysed since

    sql = _history_sql(connection.alias, guest=True)
    guest_plan = plan(sql, ["guest-7", 50, "guest-7"])

    assert "shop_recs_ev_session_" in guest_plan, guest_plan
    assert "shop_recs_event_user_id" not in guest_plan, guest_plan
    assert "shop_recs_ev_user_" not in guest_plan, guest_plan
    # So do the other reads of a guest's events (an ad's frequency cap).
    events_plan = Shopper(session_key="guest-7").events().filter(kind="view").explain()
    assert "shop_recs_ev_session_" in events_plan, events_plan
    assert "shop_recs_event_user_id" not in events_plan, events_plan
    # The same query still keeps to the guest's own events.
    latest, _ = _history_rows(Shopper(session_key="guest-7"), 50)
    assert len(latest) == 10
    assert set(Event.objects.filter(pk__in=[row[0] for row in latest])
               .values_list("user_id", flat=True)) == {None}
