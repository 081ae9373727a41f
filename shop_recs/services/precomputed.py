"""For-you candidates computed ahead of the request, kept in the shared cache.

A for-you list is made from the shopper's live history on every request. For the signed-in
shoppers active lately (PRECOMPUTE_ACTIVE_DAYS) a job (``recommendations.precompute_for_you``)
computes the model's candidates ahead, in batches, after each model activation, and stores them
here under a key made of the shopper, the model version and the very history events they were
computed from. A request whose history is unchanged reads them (one cache read instead of the
model's pass over the catalogue); any new event, a purchase or an erased one changes the key,
so the list is computed live and freshness is as before. The request still applies its rules
and re-checks availability, so a product sold out since the job is never shown; a product that
became available since (restocked, new) joins the shopper's list at their next event or the
job's next run, and so does a new product placed in the model since (services/new_products.py):
the key holds the trained version alone, or each placement would leave every list unread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache

from ..conf import recs_settings
from .items import Candidate, Reason
from .shopper import History, Shopper

logger = logging.getLogger(__name__)


def read(shopper: Shopper, history: History, version: str, pool: int) -> list[Candidate] | None:
    """The first `pool` candidates stored for this shopper, history and model version (best
    first); None when none were (a guest, PRECOMPUTE_ACTIVE_DAYS None, a new event since) or
    fewer than `pool` were (the request then computes its own)."""
    if shopper.user_id is None or not history or not recs_settings.PRECOMPUTE_ACTIVE_DAYS:
        return None
    try:
        stored = cache.get(_key(shopper, history, version))
    except Exception as exc:  # any backend's connection error: compute live
        logger.warning("shop_recs: cache unavailable (%s); for-you list computed live", exc)
        return None
    if stored is None:
        return None
    stored_pool, rows = stored
    if stored_pool < pool:
        return None
    return [Candidate(product_id, score, Reason("history", product_id=reason, kind=kind))
            for product_id, score, reason, kind in rows[:pool]]


def store(lists: Iterable[tuple[Shopper, History, list[Candidate]]], version: str,
          pool: int) -> None:
    """Keep each shopper's candidates (asked for with `pool`) for PRECOMPUTED_SECONDS, as plain
    tuples: about 0.6 KB a shopper at the default limit."""
    cache.set_many(
        {_key(shopper, history, version): (pool, tuple(
            (c.product_id, c.score, c.reason.product_id, c.reason.kind) for c in found))
         for shopper, history, found in lists},
        recs_settings.PRECOMPUTED_SECONDS,
    )


@dataclass(frozen=True)
class JobStatus:
    """How far the latest job got (the admin's model versions page shows it)."""

    version: str
    days: int  # PRECOMPUTE_ACTIVE_DAYS
    shoppers: int  # shoppers active in those days: the job goes through them
    done: int
    stored: int
    started: dt.datetime
    finished: dt.datetime | None = None


def report(status: JobStatus) -> None:
    """Keep the job's progress where every process can read it; never fails the job."""
    try:
        cache.set(_STATUS_KEY, status, recs_settings.PRECOMPUTED_SECONDS)
    except Exception as exc:
        logger.warning("shop_recs: cache unavailable (%s); job progress not kept", exc)


def last_job() -> JobStatus | None:
    try:
        return cache.get(_STATUS_KEY)
    except Exception:
        return None


_STATUS_KEY = "shop_recs:precompute_job"


def _key(shopper: Shopper, history: History, version: str) -> str:
    """Made of the shopper, the model version and the ids of the history's events."""
    raw = "|".join([shopper.key, version, *map(str, history.event_ids)])
    digest = hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()
    return f"shop_recs:for_you_ahead:{digest}"
