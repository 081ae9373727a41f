"""What may be recommended: each web process's snapshot of the available products.

Filtering 50,000 candidates against the database on every request would dominate the request,
so each process keeps the set of available product ids, their categories and the category names
in memory, rebuilt in the background every CATALOG_REFRESH_SECONDS (one query for the products,
one for the category names; ``refreshed.py``). The snapshot only narrows candidates: the
products actually shown are fetched with an availability check (``fetch_products``), so a
product that sold out a second ago is still never shown.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.signals import setting_changed
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


def build_snapshot() -> CatalogSnapshot:
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
    )


catalog: Refreshed[CatalogSnapshot] = Refreshed(
    build_snapshot, lambda: recs_settings.CATALOG_REFRESH_SECONDS, "catalogue snapshot"
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
