"""Recording shopper events: the one way rows get into the event table.

``record_event`` stores one event, ``bulk_record_events`` many (the demo generator, the import
command and the REST batch endpoint). Both validate the same way and raise or report
``EventError`` with a message that says what is wrong. An optional idempotency key makes a
retried event land once, also when two requests race on PostgreSQL: the unique index decides
and the loser reads the winner's row. The same key with a different body is an
``EventConflict``, so a client bug cannot silently overwrite or hide an event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .adapter import IN_CHUNK, Purchase, ShopAdapter, get_adapter
from .conf import recs_settings
from .jobs import schedule_co_purchase_count
from .models import Event, EventKind
from .models.events import HISTORY_KINDS

KINDS = {kind.value: kind for kind in EventKind}
# Kinds that are about one product and mean nothing without it.
PRODUCT_REQUIRED = frozenset(
    {EventKind.VIEW, EventKind.ADD_TO_CART, EventKind.PURCHASE, EventKind.REC_CLICK}
)
# Kinds that may be stored for a visitor with neither account nor session: a list shown to a
# cookieless client is still an impression (for the click-through rates), but no behaviour.
SHOPPERLESS_KINDS = frozenset({EventKind.REC_IMPRESSION})
_HISTORY_KINDS = frozenset(HISTORY_KINDS)


class _WriteCounter:
    """Counts this process's writes of history events: a history read earlier in a request is
    reused only while the count is unchanged (``services.shopper.load_history``)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.value = 0

    def bump(self) -> None:
        self.value = next(self._counter)  # atomic under the GIL


history_writes = _WriteCounter()

# A client clock this far ahead is tolerated; beyond it a timestamp is refused as "future".
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_QUANTITY = 2**31 - 1
EVENT_FIELDS = frozenset(
    {"kind", "product", "user", "session_key", "query", "context", "idempotency_key",
     "timestamp", "quantity"}
)
_field_limits = {f.name: f.max_length for f in Event._meta.fields if f.max_length}


class EventError(ValueError):
    """An event that cannot be stored as given; the message says what to fix."""


class EventConflict(EventError):
    """The idempotency key was already used for an event with a different body."""


@dataclass
class _Draft:
    """A validated, unsaved event plus what still needs a database look-up."""

    event: Event
    product_to_check: str | None  # a product given by primary key: does it exist?
    user_to_check: Any  # a user given by primary key: does it exist?


def record_event(
    *,
    kind: str,
    product: Model | Any = None,
    user: Model | Any = None,
    session_key: str | None = None,
    query: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    timestamp: dt.datetime | str | None = None,
    quantity: int = 1,
) -> Event:
    """Validate and store one event; with a known key, return the stored one instead.

    ``product`` and ``user`` are instances or primary keys. Raises EventError (a ValueError)
    for bad input and EventConflict for a reused key with a different body.
    """
    adapter = get_adapter()
    draft = _draft(
        adapter, kind=kind, product=product, user=user, session_key=session_key, query=query,
        context=context, idempotency_key=idempotency_key, timestamp=timestamp, quantity=quantity,
    )
    if draft.product_to_check and not adapter.existing_product_ids([draft.product_to_check]):
        raise EventError(_unknown_product(adapter, draft.product_to_check))
    if draft.user_to_check is not None and not _existing_user_ids([draft.user_to_check]):
        raise EventError(f"Unknown user {draft.user_to_check!r}: no user has that primary key.")
    try:
        return _save_once(draft.event)
    finally:
        if draft.event.kind in _HISTORY_KINDS:
            history_writes.bump()  # after the write, so no read from before it is reused
        if draft.event.kind == EventKind.PURCHASE:
            schedule_co_purchase_count()


def _save_once(event: Event) -> Event:
    """Save the event, or return the stored one with its idempotency key."""
    key = event.idempotency_key
    if key is None:
        event.save()
        return event
    existing = Event.objects.filter(idempotency_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                event.save()
            return event
        except IntegrityError:
            # Another request stored this key between our look-up and our insert.
            existing = Event.objects.filter(idempotency_key=key).first()
            if existing is None:
                raise
    if existing.request_hash != event.request_hash:
        raise EventConflict(
            f"Idempotency key {key!r} was already used for a different event "
            f"(event {existing.pk}); send a new key for a new event."
        )
    return existing


def validated_event(**fields: Any) -> Event:
    """The event ``record_event`` would store, validated but not saved: for writers that store
    in batches (impressions). Product and user must be instances or absent: nothing is looked up.
    """
    draft = _draft(get_adapter(), **fields)
    if draft.product_to_check or draft.user_to_check is not None:
        raise EventError("validated_event takes product and user instances, not primary keys.")
    return draft.event


ItemStatus = Literal["stored", "duplicate", "conflict", "invalid"]


@dataclass(frozen=True)
class ItemResult:
    status: ItemStatus
    error: str = ""


@dataclass
class BulkResult:
    """What happened to each event of a batch, in input order."""

    items: list[ItemResult] = field(default_factory=list)

    def count(self, status: ItemStatus) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def stored(self) -> int:
        return self.count("stored")

    @property
    def duplicates(self) -> int:
        return self.count("duplicate")

    @property
    def conflicts(self) -> int:
        return self.count("conflict")

    @property
    def invalid(self) -> int:
        return self.count("invalid")

    def errors(self) -> dict[int, str]:
        """Index -> message for every event that was not stored or already there."""
        return {i: item.error for i, item in enumerate(self.items) if item.error}


def bulk_record_events(
    events: list[Mapping[str, Any]], *, validate_products: bool = True,
    known_products: Collection[str] = frozenset(),
) -> BulkResult:
    """Store many events at once; each is reported stored, duplicate, conflict or invalid.

    Each dict takes ``record_event``'s keyword arguments. A bad event never stops the others.
    ``validate_products=False`` skips the product look-up for callers whose ids come from the
    shop's own foreign keys; ``known_products`` (e.g. the catalogue snapshot's ids) skips it for
    those ids only. Keyed rows are inserted with ON CONFLICT DO NOTHING, so batches
    racing on the same keys still store each key once; when two identical events race, both
    callers may hear "stored" (the one row holds what both sent).
    """
    adapter = get_adapter()
    results: list[ItemResult | None] = [None] * len(events)
    drafts: dict[int, _Draft] = {}
    for i, raw in enumerate(events):
        try:
            drafts[i] = _draft_from_mapping(adapter, raw)
        except EventError as exc:
            results[i] = ItemResult("invalid", str(exc))

    if validate_products:
        wanted = {d.product_to_check for d in drafts.values()
                  if d.product_to_check and d.product_to_check not in known_products}
        found = adapter.existing_product_ids(wanted) if wanted else set()
        for i, d in list(drafts.items()):
            if d.product_to_check in wanted and d.product_to_check not in found:
                results[i] = ItemResult("invalid", _unknown_product(adapter, d.product_to_check))
                del drafts[i]
    wanted_users = {d.user_to_check for d in drafts.values() if d.user_to_check is not None}
    known_users = _existing_user_ids(wanted_users) if wanted_users else set()
    for i, d in list(drafts.items()):
        if d.user_to_check is not None and d.user_to_check not in known_users:
            results[i] = ItemResult(
                "invalid", f"Unknown user {d.user_to_check!r}: no user has that primary key."
            )
            del drafts[i]

    # Keys repeated inside the batch: the first one stands for the key.
    first_with_key: dict[str, int] = {}
    for i, d in list(drafts.items()):
        key = d.event.idempotency_key
        if key is None:
            continue
        if key in first_with_key:
            first = drafts[first_with_key[key]].event
            results[i] = _repeat_result(key, first.request_hash, d.event.request_hash)
            del drafts[i]
        else:
            first_with_key[key] = i
    # Keys stored by earlier requests.
    stored_hashes = _stored_hashes(first_with_key)
    for key, i in list(first_with_key.items()):
        if key in stored_hashes:
            results[i] = _repeat_result(key, stored_hashes[key], drafts[i].event.request_hash)
            del drafts[i]
            del first_with_key[key]

    with transaction.atomic():
        Event.objects.bulk_create(
            [d.event for d in drafts.values()], batch_size=1000, ignore_conflicts=True
        )
    if any(d.event.kind in _HISTORY_KINDS for d in drafts.values()):
        history_writes.bump()
    if any(d.event.kind == EventKind.PURCHASE for d in drafts.values()):
        schedule_co_purchase_count()
    # A concurrent request may have won a key between our look-up and our insert.
    winners = _stored_hashes(first_with_key)
    for i, d in drafts.items():
        key = d.event.idempotency_key
        if key is not None and winners.get(key) != d.event.request_hash:
            results[i] = _repeat_result(key, winners.get(key, ""), d.event.request_hash)
        else:
            results[i] = ItemResult("stored")
    return BulkResult(items=[r for r in results if r is not None])


def merge_guest_events(*, session_key: str | None, user: Model) -> int:
    """Give a guest's events to the user they just signed in as; returns how many moved."""
    if not session_key or user is None or user.pk is None:
        return 0
    moved = Event.objects.filter(session_key=session_key, user__isnull=True).update(user=user)
    history_writes.bump()
    return moved


class Shopper(TypedDict):
    user: Model | None
    session_key: str | None


def request_shopper(request: HttpRequest, *, create_session: bool = True) -> Shopper:
    """Who is shopping: ``record_event(kind=..., **request_shopper(request))``.

    A guest without a session gets one now (and the cookie with the response), so that their
    events can be merged into their account when they sign in; unless ``create_session`` is
    False (an impression: a cookieless client such as a crawler would otherwise leave a session
    row behind on every request).
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return {"user": user, "session_key": None}
    session = getattr(request, "session", None)
    if session is None:
        return {"user": None, "session_key": None}
    if session.session_key is None and not create_session:
        return {"user": None, "session_key": None}
    if session.session_key is None:
        session.save()
        session.modified = True  # so that SessionMiddleware sends the new key's cookie
    return {"user": None, "session_key": session.session_key}


def purchase_event(purchase: Purchase) -> dict[str, Any]:
    """The event for one order line; its key makes the receiver and the import store it once."""
    return {
        "kind": EventKind.PURCHASE,
        "user": purchase.user_id,
        "product": purchase.product_id,
        "quantity": purchase.quantity,
        "timestamp": purchase.timestamp,
        "idempotency_key": f"order-line:{purchase.order_line_pk}",
    }


# --- Validation --------------------------------------------------------------------------------


def _draft_from_mapping(adapter: ShopAdapter, raw: Any) -> _Draft:
    if not isinstance(raw, Mapping):
        raise EventError(f"An event must be an object of fields, not {type(raw).__name__}.")
    unknown = sorted(set(raw) - EVENT_FIELDS)
    if unknown:
        raise EventError(
            f"Unknown field(s) {', '.join(map(repr, unknown))}; "
            f"an event has: {', '.join(sorted(EVENT_FIELDS))}."
        )
    if "kind" not in raw:
        raise EventError("Missing field 'kind'.")
    return _draft(adapter, **raw)


def _draft(
    adapter: ShopAdapter,
    *,
    kind: Any,
    product: Any = None,
    user: Any = None,
    session_key: Any = None,
    query: Any = None,
    context: Any = None,
    idempotency_key: Any = None,
    timestamp: Any = None,
    quantity: Any = 1,
) -> _Draft:
    if not isinstance(kind, str) or kind not in KINDS:
        raise EventError(f"Unknown event kind {kind!r}; expected one of: {', '.join(KINDS)}.")
    kind = KINDS[kind]
    product_id, product_to_check = _product(adapter, kind, product)
    user_id, user_to_check = _user(user)
    session_key = _optional_text("session_key", session_key)
    if user_id is None and not session_key and kind not in SHOPPERLESS_KINDS:
        raise EventError("An event needs a user or a guest's session_key; neither was given.")
    query = _optional_text("query", query)
    if kind == EventKind.SEARCH and not query:
        raise EventError("A search event needs the query text (query=...).")
    context = _context(context)
    key = _optional_text("idempotency_key", idempotency_key) or None
    given_time = _timestamp(timestamp)
    quantity = _quantity(quantity)
    body = {
        "kind": str(kind), "product_id": product_id,
        "user_id": None if user_id is None else str(user_id), "session_key": session_key,
        "query": query, "context": context, "quantity": quantity,
        "timestamp": None if given_time is None else given_time.isoformat(),
    }
    event = Event(
        kind=kind, product_id=product_id, user_id=user_id, session_key=session_key, query=query,
        context=context, quantity=quantity, timestamp=given_time or timezone.now(),
        idempotency_key=key, request_hash=_hash(body) if key else "",
    )
    return _Draft(event=event, product_to_check=product_to_check, user_to_check=user_to_check)


def _product(adapter: ShopAdapter, kind: EventKind, product: Any) -> tuple[str, str | None]:
    """(text id, id still to look up) for a product instance, a primary key, or nothing."""
    if product is None or product == "":
        if kind in PRODUCT_REQUIRED:
            raise EventError(f"A {kind.value} event needs a product (product=...).")
        return "", None
    try:
        product_id = adapter.to_product_id(product)
    except ValueError as exc:
        raise EventError(f"Unknown product: {exc}.") from None
    if len(product_id) > _field_limits["product_id"]:
        raise EventError(f"Product id {product_id[:80]!r}... is too long to be a product id.")
    return product_id, None if isinstance(product, Model) else product_id


def _user(user: Any) -> tuple[Any, Any]:
    """(user primary key or None, primary key still to look up or None)."""
    if user is None or getattr(user, "is_anonymous", False):
        return None, None
    user_model = get_user_model()
    if isinstance(user, Model):
        if not isinstance(user, user_model) or user.pk is None:
            raise EventError(f"{user!r} is not a saved {user_model._meta.label}.")
        return user.pk, None
    try:
        if isinstance(user, bool):
            raise ValidationError("a boolean is not a primary key")
        pk = user_model._meta.pk.to_python(user)
    except ValidationError:
        raise EventError(f"{user!r} is not a valid user primary key.") from None
    return pk, pk


def _optional_text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventError(f"{name} must be text, not {type(value).__name__}.")
    value = value.strip()
    limit = _field_limits[name]
    if len(value) > limit:
        raise EventError(f"{name} is {len(value)} characters long; at most {limit} are allowed.")
    if "\x00" in value:  # no database text column stores NUL (PostgreSQL refuses it)
        raise EventError(f"{name} may not contain NUL characters (\\x00).")
    return value


def _context(context: Any) -> dict[str, Any]:
    if context is None or context == {}:
        return {}
    if not isinstance(context, Mapping):
        raise EventError(f"context must be an object (a dict), not {type(context).__name__}.")
    try:
        encoded = json.dumps(dict(context), separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise EventError(f"context must be JSON-serialisable: {exc}.") from None
    # Text a database cannot store (lone surrogates anywhere; NUL, which PostgreSQL's jsonb
    # refuses) is a client's mistake, not a server error.
    try:
        size = len(encoded.encode())
    except UnicodeEncodeError:
        raise EventError("context holds text that is not valid Unicode (a lone surrogate).") \
            from None
    if "\\u0000" in encoded and _holds_nul(context):
        raise EventError("context may not contain NUL characters (\\u0000).")
    limit = recs_settings.MAX_EVENT_CONTEXT_BYTES
    if size > limit:
        raise EventError(
            f"context is {size} bytes as JSON; at most {limit} are allowed "
            '(SHOP_RECS["MAX_EVENT_CONTEXT_BYTES"]).'
        )
    return json.loads(encoded)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value.strip())
        if parsed is None:
            raise EventError(
                f"timestamp {value[:40]!r} is not an ISO 8601 date and time "
                "(e.g. 2025-01-31T12:00:00+00:00)."
            )
        value = parsed
    if not isinstance(value, dt.datetime):
        raise EventError(f"timestamp must be a datetime, not {type(value).__name__}.")
    if settings.USE_TZ and timezone.is_naive(value):
        raise EventError("timestamp has no time zone; give an aware datetime (e.g. UTC).")
    if value > timezone.now() + MAX_CLOCK_SKEW:
        raise EventError(f"timestamp {value.isoformat()} is in the future.")
    return value


def _quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUANTITY:
        raise EventError(f"quantity must be a whole number of at least 1, not {value!r}.")
    return value


def _hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unknown_product(adapter: ShopAdapter, product_id: str) -> str:
    return f"Unknown product {product_id!r}: no {adapter.model()._meta.label} has that primary key."


def _existing_user_ids(user_ids: Iterable[Any]) -> set[Any]:
    wanted = list(user_ids)
    manager = get_user_model()._default_manager
    found: set[Any] = set()
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        found.update(manager.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def _stored_hashes(keys: Iterable[str]) -> dict[str, str]:
    wanted = list(keys)
    found: dict[str, str] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        found.update(
            Event.objects.filter(idempotency_key__in=chunk).values_list(
                "idempotency_key", "request_hash"
            )
        )
    return found


def _repeat_result(key: str, stored_hash: str, new_hash: str) -> ItemResult:
    if stored_hash == new_hash:
        return ItemResult("duplicate")
    return ItemResult(
        "conflict",
        f"Idempotency key {key!r} was already used for a different event; "
        "send a new key for a new event.",
    )
