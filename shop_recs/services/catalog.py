"""What may be recommended: each web process's snapshot of the available products.

Filtering 50,000 candidates against the database on every request would dominate the request,
so each process keeps the set of available product ids, their categories and the category names
in memory, checked in the background every CATALOG_REFRESH_SECONDS (``refreshed.py``). The
check is one aggregate query (how many products are available, and their ids' sum or range):
while it finds the same, the snapshot is kept as it is, and with it what requests derived from
it (the model's availability masks, the new products' placement). Building it again reads every
available product (50,000 in 48-82 ms: ``benchmarks.serving``; its requests wait for it while
the rebuild thread holds the interpreter lock), so it is done only when the check sees a change,
or once the snapshot is FULL_REBUILD_INTERVALS refresh intervals old, for what the check cannot
see (a product moved to another category, a category renamed). The snapshot only narrows
candidates: the products actually shown are fetched with an availability check
(``fetch_products``), so a product that sold out a second ago is still never shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.signals import setting_changed
from django.db import models
from django.db.models import Model, QuerySet

from ..adapter import IN_CHUNK, get_adapter, resolve_lookup
from ..conf import recs_settings
from .refreshed import Refreshed

T = TypeVar("T")


@dataclass(frozen=True)
class CatalogSnapshot:
    available: frozenset[str]
    category_of: Mapping[str, str | None]  # available product id -> category id
    category_names: Mapping[str, str]  # category id -> its label ("Tea")
    members: Mapping[str, frozenset[str]]  # category id -> its available product ids
    fingerprint: tuple[Any, ...] = ()  # available_fingerprint() when it was built
    built_at: float = field(default_factory=time.monotonic)
    # Values computed from this snapshot, kept as long as it is (see derived).
    _derived: dict[Hashable, Any] = field(default_factory=dict, compare=False)

    def category_name(self, category: str | None) -> str:
        if category is None:
            return ""
        return self.category_names.get(category, category)

    def derived(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, once per snapshot: what requests derive from the catalogue (a model's
        mask of the available products) is made again only when the snapshot is."""
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = compute()
            return value


def _category_labels(category_ids: set[str]) -> dict[str, str]:
    """Readable category names: the related object's str() when the category is a relation."""
    field_name = recs_settings.PRODUCT_CATEGORY_FIELD
    if not field_name or not category_ids:
        return {}
    resolved = resolve_lookup(get_adapter().model(), field_name)
    related = resolved.related_model
    if related is None:
        return {c: c for c in category_ids}
    names: dict[str, str] = {}
    wanted = sorted(category_ids)
    for start in range(0, len(wanted), IN_CHUNK):
        for obj in related._default_manager.filter(pk__in=wanted[start : start + IN_CHUNK]):
            names[str(obj.pk)] = str(obj)
    return names


# A snapshot this many refresh intervals old is built again, whatever the check finds.
FULL_REBUILD_INTERVALS = 10


def available_fingerprint() -> tuple[Any, ...]:
    """What changes when products become available or unavailable, in one aggregate query:
    their count, and the sum of their ids where ids are integers (else their smallest and
    largest). Counted by the database, so the web process's interpreter is free meanwhile."""
    queryset = get_adapter().available_products().order_by()
    if isinstance(queryset.model._meta.pk, models.IntegerField):  # auto fields are ones too
        found = queryset.aggregate(count=models.Count("pk"), total=models.Sum("pk"))
    else:
        found = queryset.aggregate(count=models.Count("pk"), low=models.Min("pk"),
                                   high=models.Max("pk"))
    return tuple(sorted(found.items()))


def refreshed_snapshot() -> CatalogSnapshot:
    """The snapshot as it is if the catalogue's check finds no change, else a new one."""
    current = catalog.current
    fingerprint = available_fingerprint()
    full_rebuild_age = FULL_REBUILD_INTERVALS * recs_settings.CATALOG_REFRESH_SECONDS
    if (current is not None and current.fingerprint == fingerprint
            and time.monotonic() - current.built_at < full_rebuild_age):
        return current
    return build_snapshot(fingerprint)


def build_snapshot(fingerprint: tuple[Any, ...] = ()) -> CatalogSnapshot:
    adapter = get_adapter()
    category_of = adapter.categories_for(adapter.available_products())
    members: dict[str, set[str]] = {}
    for product_id, category in category_of.items():
        if category is not None:
            members.setdefault(category, set()).add(product_id)
    return CatalogSnapshot(
        available=frozenset(category_of),
        category_of=category_of,
        category_names=_category_labels(set(members)),
        members={c: frozenset(ids) for c, ids in members.items()},
        fingerprint=fingerprint,
    )


catalog: Refreshed[CatalogSnapshot] = Refreshed(
    refreshed_snapshot, lambda: recs_settings.CATALOG_REFRESH_SECONDS, "catalogue snapshot"
)


def _reset(*, setting: str, **kwargs) -> None:
    if setting == "SHOP_RECS":
        catalog.invalidate()


setting_changed.connect(_reset)


def fetch_products(
    candidate_ids: Iterable[str], other_ids: Iterable[str] = ()
) -> tuple[dict[str, Model], set[str]]:
    """Product instances by id, and which of the candidates are available right now.

    One indexed query through the adapter's ``available_products()`` (so an adapter that
    overrides it is honoured exactly) for the candidates and ``other_ids`` (the products reasons
    name) together; one more only for those of ``other_ids`` that are not available.
    """
    adapter = get_adapter()
    wanted = list(dict.fromkeys(candidate_ids))
    candidates = set(wanted)
    others = [pid for pid in dict.fromkeys(other_ids) if pid not in candidates]
    products = (_by_id(adapter.for_display(adapter.available_products()), wanted + others)
                if wanted or others else {})
    available = {pid for pid in wanted if pid in products}
    gone = [pid for pid in others if pid not in products]
    if gone:
        products.update(_by_id(adapter.for_display(adapter.all_products()), gone))
    return products, available


def _by_id(queryset: QuerySet, product_ids: list[str]) -> dict[str, Model]:
    # No ORDER BY: the products are looked up by id (the model's default ordering would sort).
    return {str(p.pk): p for p in queryset.filter(pk__in=product_ids).order_by()}


def categories_of(product_ids: Iterable[str], snapshot: CatalogSnapshot) -> dict[str, str | None]:
    """Category ids of these products; unavailable ones (not in the snapshot) cost one query."""
    wanted = list(dict.fromkeys(product_ids))
    found = {pid: snapshot.category_of[pid] for pid in wanted if pid in snapshot.category_of}
    missing = [pid for pid in wanted if pid not in found]
    if missing:
        adapter = get_adapter()
        found.update(adapter.categories_for(adapter.all_products().filter(pk__in=missing)))
    return found
