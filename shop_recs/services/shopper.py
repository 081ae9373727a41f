"""Who is shopping, and what they did lately (the live sequence the model reads).

The history is read from the event table on every request (one indexed query, at most
HISTORY_LENGTH rows, shared by the lists of one page), so a shopper's new view, cart or
purchase changes their next list at once, whichever process or job wrote it. Personal lists are
made from it on every request, so no invalidation signal has to reach every web process; only
the set of purchases is cached, under the id of the latest purchase in the window. Impressions
are not part of the history (the model does not read them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import connections, router
from django.db.models import Q

from ..conf import recs_settings
from ..events import history_writes
from ..middleware import mark_personal
from ..models import Event, EventKind
from ..models.events import HISTORY_KINDS
from .cache import cached

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
            return Event.objects.filter(Q(session_key=self.session_key), user__isnull=True)
        return Event.objects.none()


@dataclass(frozen=True)
class History:
    """The shopper's latest product events, oldest first (what the model reads)."""

    product_ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    event_ids: tuple[int, ...] = field(default=(), repr=False)
    truncated: bool = True  # False: the shopper has no older product events than these

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


def _read_history(shopper: Shopper, length: int) -> History:
    rows = _history_rows(shopper, length)
    rows.reverse()
    return History(
        product_ids=tuple(r[1] for r in rows),
        kinds=tuple(r[2] for r in rows),
        event_ids=tuple(r[0] for r in rows),
        truncated=len(rows) == length,
    )


def _history_rows(shopper: Shopper, length: int) -> list[tuple[int, str, str]]:
    """(id, product_id, kind) of the shopper's latest history events, newest first.

    The query the ORM would make (``shopper.events()`` of HISTORY_KINDS with a product), written
    out once: every recommendation request runs it, and building it through the ORM cost more
    than the database's answer. The kinds are literals, as in the partial indexes' condition,
    so the planner uses them.
    """
    database = router.db_for_read(Event)
    connection = connections[database]
    if shopper.user_id is not None:
        user = Event._meta.get_field("user").get_db_prep_value(shopper.user_id, connection)
        sql, params = _history_sql(database, guest=False), [user, length]
    elif shopper.session_key:
        sql, params = _history_sql(database, guest=True), [shopper.session_key, length]
    else:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@lru_cache(maxsize=8)
def _history_sql(database: str, *, guest: bool) -> str:
    quote = connections[database].ops.quote_name
    meta = Event._meta

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    who = (f"{column('session_key')} = %s AND {column('user')} IS NULL" if guest
           else f"{column('user')} = %s")
    if not all(kind.replace("_", "").isalnum() for kind in HISTORY_KINDS):
        raise ValueError(f"a history kind is not a plain word: {HISTORY_KINDS}")
    kinds = ", ".join(f"'{kind}'" for kind in HISTORY_KINDS)
    return (
        f"SELECT {column('id')}, {column('product_id')}, {column('kind')} "
        f"FROM {quote(meta.db_table)} "
        f"WHERE {who} AND {column('kind')} IN ({kinds}) AND {column('product_id')} <> '' "
        f"ORDER BY {column('timestamp')} DESC, {column('id')} DESC LIMIT %s"
    )


def purchased_products(shopper: Shopper, history: History) -> frozenset[str]:
    """Every product the shopper ever bought (cached until they buy again).

    A new purchase is the newest event, so it enters the history window: the latest purchase in
    the window names the cached set, which views and carts leave alone. (A purchase imported
    later with an old timestamp, or one pushed out of the window by HISTORY_LENGTH newer events
    within minutes, shows after CACHE_SECONDS.)
    """
    if not shopper.is_known or not history:
        return frozenset()  # a purchase is an event, so no events means no purchases
    if not history.truncated:  # the window holds every product event the shopper has
        return frozenset(pid for pid, kind in zip(history.product_ids, history.kinds,
                                                  strict=True) if kind == EventKind.PURCHASE)
    latest = next((event_id for event_id, kind in zip(reversed(history.event_ids),
                                                       reversed(history.kinds), strict=True)
                   if kind == EventKind.PURCHASE), "none")
    return cached(
        f"shop_recs:purchased:{shopper.key}:{latest}",
        lambda: frozenset(
            shopper.events()
            .filter(kind=EventKind.PURCHASE)
            .order_by()
            .values_list("product_id", flat=True)
            .distinct()
        ),
    )
