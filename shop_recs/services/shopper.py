"""Who is shopping, and what they did lately (the live sequence the model reads).

The history is read from the event table on every request (one indexed query, at most
HISTORY_LENGTH rows, shared by the lists of one page), so a shopper's new view, cart or
purchase changes their next list at once, whichever process or job wrote it. Personal lists are
made from it on every request, so no invalidation signal has to reach every web process. The
same query returns every product the shopper ever bought (the lists leave those out), so a
purchase hides its product at once, however old its timestamp. Impressions are not part of the
history (the model does not read them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import connections, router
from django.db.models import Case, When

from ..conf import recs_settings
from ..events import history_writes
from ..middleware import mark_personal
from ..models import Event, EventKind
from ..models.events import HISTORY_KINDS

# Where a request keeps its Shopper, so that the lists of one page share one history read.
SHOPPER_ATTRIBUTE = "_shop_recs_shopper"


@dataclass(frozen=True)
class Shopper:
    """A signed-in user (by primary key) or a guest (by session key); neither: unknown visitor."""

    user_id: Any = None
    session_key: str = ""
    # The history reads of one request (``load_history``), for a shopper made by from_request:
    # a Shopper kept longer (a job, a shell) reads afresh each time. Not part of equality.
    reads: dict[int, tuple[int, History]] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_request(cls, request: Any) -> Shopper:
        """The request's shopper, without creating a session for a visitor who has none.

        The lists of one page share one Shopper, so they share one history read. Whatever is
        made for this shopper is personal: the response is marked private."""
        mark_personal(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            shopper = cls(user_id=user.pk, reads={})
        else:
            session = getattr(request, "session", None)
            key = (session.session_key or "") if session is not None else ""
            shopper = cls(session_key=key, reads={})
        holder = getattr(request, "_request", request)  # a DRF Request wraps the HttpRequest
        earlier = getattr(holder, SHOPPER_ATTRIBUTE, None)
        if earlier == shopper:  # the same person still (not signed in or out meanwhile)
            return earlier
        setattr(holder, SHOPPER_ATTRIBUTE, shopper)
        return shopper

    @classmethod
    def for_user(cls, user: Any) -> Shopper:
        return cls(user_id=getattr(user, "pk", user))

    @property
    def is_known(self) -> bool:
        return self.user_id is not None or bool(self.session_key)

    @property
    def key(self) -> str:
        """Stable text id for cache keys ("u42", "s<hash of the session key>", "" if unknown)."""
        if self.user_id is not None:
            return f"u{self.user_id}"
        if self.session_key:
            # The session key is a credential: never put it in a cache key as it is.
            return "s" + hashlib.sha256(self.session_key.encode()).hexdigest()[:24]
        return ""

    def events(self):
        """This shopper's events (an empty queryset for an unknown visitor)."""
        if self.user_id is not None:
            return Event.objects.filter(user_id=self.user_id)
        if self.session_key:
            # "Without a user" as _history_sql writes it: no index on the user column serves it.
            return Event.objects.alias(
                without_user=Case(When(user__isnull=True, then=1), default=0),
            ).filter(session_key=self.session_key, without_user=1)
        return Event.objects.none()


@dataclass(frozen=True)
class History:
    """The shopper's latest product events, oldest first (what the model reads)."""

    product_ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    event_ids: tuple[int, ...] = field(default=(), repr=False)
    # Every product the shopper ever bought, within the window or before it.
    purchased: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.product_ids)

    def latest_kind(self) -> dict[str, str]:
        """Product id -> the kind of the shopper's latest event on it."""
        return dict(zip(self.product_ids, self.kinds, strict=True))

    def recent_products(self, kind: str | None = None) -> list[str]:
        """Distinct product ids, most recent first (optionally only events of one kind)."""
        seen: dict[str, None] = {}
        for product_id, event_kind in zip(
            reversed(self.product_ids), reversed(self.kinds), strict=True
        ):
            if kind is None or event_kind == kind:
                seen.setdefault(product_id, None)
        return list(seen)


def load_history(shopper: Shopper, length: int | None = None) -> History:
    """The latest ``length`` (default HISTORY_LENGTH) product events of the shopper.

    Read once per request: the page's other lists reuse it, unless this process has written a
    history event since (``{% record_view %}`` between two tags, a purchase), so a list never
    misses an event written before it in the same request."""
    if not shopper.is_known:
        return History()
    length = length or recs_settings.HISTORY_LENGTH
    if shopper.reads is None:
        return _read_history(shopper, length)
    written = history_writes.value
    earlier = shopper.reads.get(length)
    if earlier is not None and earlier[0] == written:
        return earlier[1]
    history = _read_history(shopper, length)
    shopper.reads[length] = (written, history)
    return history


def active_users(since: dt.datetime) -> list[Any]:
    """Primary keys of the signed-in shoppers with a history event since `since`, ascending."""
    return list(
        Event.objects.filter(kind__in=HISTORY_KINDS, user__isnull=False, timestamp__gte=since)
        .exclude(product_id="").order_by("user_id").values_list("user_id", flat=True).distinct()
    )


def _read_history(shopper: Shopper, length: int) -> History:
    rows, purchased = _history_rows(shopper, length)
    rows.reverse()
    return History(
        product_ids=tuple(r[1] for r in rows),
        kinds=tuple(r[2] for r in rows),
        event_ids=tuple(r[0] for r in rows),
        purchased=frozenset(purchased),
    )


def _history_rows(shopper: Shopper, length: int) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(id, product_id, kind) of the shopper's latest history events, newest first, and the
    product ids of all their purchases (repeats included), in one round trip.

    The query the ORM would make (``shopper.events()`` of HISTORY_KINDS with a product, and of
    purchases), written out once: every recommendation request runs it, and building it through
    the ORM cost more than the database's answer. The kinds are literals, as in the partial
    indexes' conditions, so the planner uses them.
    """
    database = router.db_for_read(Event)
    connection = connections[database]
    if shopper.user_id is not None:
        who = Event._meta.get_field("user").get_db_prep_value(shopper.user_id, connection)
        sql = _history_sql(database, guest=False)
    elif shopper.session_key:
        who, sql = shopper.session_key, _history_sql(database, guest=True)
    else:
        return [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, [who, length, who])
        found = cursor.fetchall()
    latest = [(event_id, product_id, kind) for part, event_id, product_id, kind in found
              if part == 0]
    return latest, [product_id for part, _, product_id, _ in found if part == 1]


@lru_cache(maxsize=8)
def _history_sql(database: str, *, guest: bool) -> str:
    quote = connections[database].ops.quote_name
    meta = Event._meta

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    # A guest's events are those of the session without a user (events merged into an account
    # at sign-in keep their session key). "user IS NULL" is written so that no index on the user
    # column can serve it: with statistics taken while every event had a user (a shop's first
    # days, an import of signed-in history), the planner estimated it at one row and read every
    # guest event in the table through that index instead of the session's few (the serving
    # benchmark's first run, at 11,000 guest events: 5.16 ms of PostgreSQL per product page,
    # 2.7-4.0 ms with this; growing with the guest events until the next ANALYZE).
    who = (f"{column('session_key')} = %s "
           f"AND CASE WHEN {column('user')} IS NULL THEN 1 ELSE 0 END = 1" if guest
           else f"{column('user')} = %s")
    if not all(kind.replace("_", "").isalnum() for kind in HISTORY_KINDS):
        raise ValueError(f"a history kind is not a plain word: {HISTORY_KINDS}")
    kinds = ", ".join(f"'{name}'" for name in HISTORY_KINDS)
    row_id, product, kind, time = (column(name) for name in ("id", "product_id", "kind",
                                                              "timestamp"))
    columns, table = f"{row_id}, {product}, {kind}, {time}", quote(meta.db_table)
    purchase = EventKind.PURCHASE.value
    # part 0: the window, newest first; part 1: every purchase. The outer ORDER BY keeps the
    # window's order (a UNION ALL by itself promises none).
    return (
        f"SELECT part, {row_id}, {product}, {kind} FROM ("
        f"SELECT 0 AS part, {columns} FROM ("
        f"SELECT {columns} FROM {table} WHERE {who} AND {kind} IN ({kinds}) AND {product} <> '' "
        f"ORDER BY {time} DESC, {row_id} DESC LIMIT %s) latest "
        f"UNION ALL SELECT 1, {columns} FROM {table} "
        f"WHERE {who} AND {kind} = '{purchase}' AND {product} <> ''"
        f") found ORDER BY part, {time} DESC, {row_id} DESC"
    )
