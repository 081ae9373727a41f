"""The adapter: everything the plugin knows about the host shop's products and orders.

The plugin never imports the shop's models. It asks the adapter, ``get_adapter()``, which
products may be recommended, what a product's text and category are, and which purchases the
shop's order lines hold. Product ids leave the adapter as text (``"42"``), the form in which
events store them, so every caller joins on the same key.

Two ways to fit a shop
----------------------
1. **By field names** (most shops). Name the models and fields in ``settings.SHOP_RECS``; any
   Django lookup path works, including through relations::

       SHOP_RECS = {
           "PRODUCT_MODEL": "catalogue.Product",
           "PRODUCT_TEXT_FIELDS": ["title", "description", "category__name", "brand__name"],
           "PRODUCT_CATEGORY_FIELD": "category",
           "PRODUCT_AVAILABLE_FILTER": {"is_public": True, "stock__gt": 0},
           "ORDER_LINE_MODEL": "orders.Line",
           "ORDER_LINE_PRODUCT_FIELD": "product",
           "ORDER_LINE_USER_FIELD": "order__customer",
           "ORDER_LINE_QUANTITY_FIELD": "quantity",
           "ORDER_LINE_TIME_FIELD": "order__placed_at",
       }

   ``manage.py check`` reports every name that does not resolve (ids ``shop_recs.E0xx``).

2. **By subclassing** (shops whose rules do not fit a filter: availability computed from
   several tables, text assembled from attributes, orders in another system). Override the
   methods you need and point ``"ADAPTER"`` at the class::

       class MyAdapter(ShopAdapter):
           def available_products(self):
               return super().available_products().exclude(variants__isnull=True)

           def purchases(self, since=None):
               for row in erp_client.order_lines(since=since):
                   yield Purchase(row.customer_id, str(row.sku_id), row.qty, row.time, row.id)

       SHOP_RECS = {"PRODUCT_MODEL": "catalogue.Product", "ADAPTER": "myshop.recs.MyAdapter"}

   Every other part of the plugin calls only the public methods below, so an override takes
   effect everywhere (training, serving, the purchase receiver, ``recs_import_orders``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, ValidationError
from django.db.models import Field, ForeignObjectRel, Model, QuerySet

from .conf import recs_settings

# Largest number of values put into one SQL "IN (...)" (SQLite allows 999 parameters by default).
IN_CHUNK = 900


class Purchase(NamedTuple):
    """One order line, as the plugin reads it."""

    user_id: Any
    product_id: str
    quantity: int
    timestamp: dt.datetime
    order_line_pk: Any


class FieldPathError(ValueError):
    """A configured field name that does not resolve on its model."""


@dataclass(frozen=True)
class ResolvedLookup:
    """Where a lookup path such as ``order__user`` ends."""

    field: Field | ForeignObjectRel
    many: bool  # True when a hop crosses a to-many relation (several values per row)

    @property
    def is_relation(self) -> bool:
        return bool(self.field.is_relation)

    @property
    def related_model(self) -> type[Model] | None:
        return self.field.related_model if self.field.is_relation else None


def resolve_lookup(model: type[Model], lookup: str) -> ResolvedLookup:
    """Follow ``a__b__c`` through ``model``'s fields; raise FieldPathError naming the bad part."""
    if not isinstance(lookup, str) or not lookup:
        raise FieldPathError(f"{lookup!r} is not a field name")
    current: type[Model] = model
    many = False
    parts = lookup.split("__")
    field: Field | ForeignObjectRel | None = None
    for i, part in enumerate(parts):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            names = sorted(
                f.name for f in current._meta.get_fields() if not getattr(f, "hidden", False)
            )
            raise FieldPathError(
                f"{current._meta.label} has no field {part!r}"
                + (f" (in {lookup!r})" if len(parts) > 1 else "")
                + f"; its fields are: {', '.join(names)}"
            ) from None
        many = many or bool(field.many_to_many or field.one_to_many)
        if i < len(parts) - 1:
            if not field.is_relation:
                raise FieldPathError(
                    f"{current._meta.label}.{part} is not a relation, so {lookup!r} cannot go "
                    "past it"
                )
            current = field.related_model
    assert field is not None
    return ResolvedLookup(field=field, many=many)


def productmodel_from_settings() -> type[Model]:
    """The model named by PRODUCT_MODEL, or ImproperlyConfigured saying what is wrong."""
    return model_from_setting("PRODUCT_MODEL", required=True)  # type: ignore[return-value]


def model_from_setting(name: str, *, required: bool) -> type[Model] | None:
    label = getattr(recs_settings, name)
    if label is None:
        if required:
            raise ImproperlyConfigured(
                f'SHOP_RECS["{name}"] is not set: name your model, e.g. "shop.Product".'
            )
        return None
    try:
        return apps.get_model(label)
    except (ValueError, LookupError) as exc:
        raise ImproperlyConfigured(
            f'SHOP_RECS["{name}"] = {label!r} is not an installed model ("app_label.ModelName"'
            f" of an app in INSTALLED_APPS): {exc}"
        ) from None


class ShopAdapter:
    """The default adapter, configured by the field names in ``settings.SHOP_RECS``."""

    def __init__(self) -> None:
        self.settings = recs_settings

    # --- Products -----------------------------------------------------------------------------

    def model(self) -> type[Model]:
        """The host's product model."""
        return productmodel_from_settings()

    def all_products(self) -> QuerySet:
        """Every product, available or not (events may name a product that is sold out)."""
        return self.model()._default_manager.all()

    def available_products(self) -> QuerySet:
        """The products that may be recommended."""
        return self.all_products().filter(**self.settings.PRODUCT_AVAILABLE_FILTER)

    def to_product_id(self, product: Model | Any) -> str:
        """The text id of a product instance or primary key; ValueError if it cannot be one."""
        model = self.model()
        if isinstance(product, Model):
            if not isinstance(product, model):
                raise ValueError(
                    f"{product!r} is a {type(product)._meta.label}, not a {model._meta.label}"
                )
            if product.pk is None:
                raise ValueError(f"{product!r} has not been saved (it has no primary key)")
            return str(product.pk)
        if product is None or isinstance(product, bool) or product == "":
            raise ValueError(f"{product!r} is not a product id")
        pk_field = model._meta.pk
        try:
            value = pk_field.to_python(product)
            pk_field.run_validators(value)  # e.g. an integer beyond the column's range
            return str(value)
        except ValidationError:
            raise ValueError(
                f"{product!r} is not a valid {model._meta.label} primary key"
            ) from None

    def existing_product_ids(self, product_ids: Iterable[str]) -> set[str]:
        """Which of these text ids name a product that exists (one query per 900 ids)."""
        wanted = list(dict.fromkeys(product_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            pks = self.all_products().filter(pk__in=chunk).values_list("pk", flat=True)
            found.update(str(pk) for pk in pks)
        return found

    def get_product(self, product_id: Any) -> Model | None:
        """The product with this id, or None if there is none (or the id is malformed)."""
        try:
            pk = self.to_product_id(product_id)
        except ValueError:
            return None
        return self.all_products().filter(pk=pk).first()

    def texts_for(self, queryset: QuerySet) -> dict[str, str]:
        """Each product's text (configured fields joined), by text id, in one query.

        A to-many lookup (e.g. ``tags__name``) contributes all its values.
        """
        fields = list(self.settings.PRODUCT_TEXT_FIELDS)
        parts: dict[str, list[list[str]]] = {}
        for pk, *values in queryset.order_by("pk").values_list("pk", *fields):
            slots = parts.setdefault(str(pk), [[] for _ in fields])
            for slot, value in zip(slots, values, strict=True):
                text = "" if value is None else str(value).strip()
                if text and text not in slot:
                    slot.append(text)
        return {
            pk: _sentences(", ".join(slot) for slot in slots if slot) for pk, slots in parts.items()
        }

    def texts_for_ids(self, product_ids: Iterable[str]) -> dict[str, str]:
        """``texts_for`` of the products with these text ids (one query per 900 ids)."""
        wanted = list(dict.fromkeys(product_ids))
        texts: dict[str, str] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            texts.update(self.texts_for(self.all_products().filter(pk__in=chunk)))
        return texts

    def product_text(self, product: Model) -> str:
        """One product's text, exactly as ``texts_for`` builds it."""
        pid = self.to_product_id(product)
        return self.texts_for(self.all_products().filter(pk=pid)).get(pid, "")

    def categories_for(self, queryset: QuerySet) -> dict[str, str | None]:
        """Each product's category id as text (None: no category), by text id, in one query."""
        field = self.settings.PRODUCT_CATEGORY_FIELD
        if not field:
            return {str(pk): None for pk in queryset.values_list("pk", flat=True)}
        return {
            str(pk): None if category is None else str(category)
            for pk, category in queryset.values_list("pk", field)
        }

    def category_of(self, product: Model) -> str | None:
        """One product's category id as text, exactly as ``categories_for`` gives it."""
        pid = self.to_product_id(product)
        return self.categories_for(self.all_products().filter(pk=pid)).get(pid)

    def for_display(self, queryset: QuerySet) -> QuerySet:
        """Products about to be rendered in a list, with the relations templates show."""
        relations = self.settings.PRODUCT_SELECT_RELATED
        if relations is None:
            category = self._category_relation()
            relations = [category] if category else []
        return queryset.select_related(*relations) if relations else queryset

    def _category_relation(self) -> str | None:
        field_name = self.settings.PRODUCT_CATEGORY_FIELD
        if not field_name or "__" in field_name:
            return None
        field = self.model()._meta.get_field(field_name)
        return field_name if field.many_to_one else None

    def product_url(self, product: Model) -> str:
        """Where a link to the product goes (``get_absolute_url``; "" when the model has none)."""
        get_url = getattr(product, "get_absolute_url", None)
        return get_url() if callable(get_url) else ""

    # --- Orders ------------------------------------------------------------------------------

    def order_line_model(self) -> type[Model] | None:
        """The host's order-line model, or None when the shop has not named one."""
        return model_from_setting("ORDER_LINE_MODEL", required=False)

    def purchases(self, since: dt.datetime | None = None) -> Iterator[Purchase]:
        """Every purchase since a time (all when None), oldest first, streamed in chunks."""
        queryset = self._order_lines(since)
        return iter(()) if queryset is None else self._purchases_in(queryset)

    def purchase_count(self, since: dt.datetime | None = None) -> int | None:
        """How many purchases ``purchases(since)`` yields, for progress bars (None: unknown)."""
        queryset = self._order_lines(since)
        return None if queryset is None else queryset.count()

    def purchase_for_line(self, line: Model) -> Purchase | None:
        """The purchase one saved order line stands for (read back with the configured lookups)."""
        rows = self._purchases_in(type(line)._default_manager.filter(pk=line.pk))
        return next(rows, None)

    def _order_lines(self, since: dt.datetime | None) -> QuerySet | None:
        model = self.order_line_model()
        if model is None:
            return None
        queryset = model._default_manager.all()
        if since is not None:
            queryset = queryset.filter(**{f"{self.settings.ORDER_LINE_TIME_FIELD}__gte": since})
        return queryset

    def _purchases_in(self, queryset: QuerySet) -> Iterator[Purchase]:
        s = self.settings
        time_field = s.ORDER_LINE_TIME_FIELD
        rows = queryset.order_by(time_field, "pk").values_list(
            s.ORDER_LINE_USER_FIELD, s.ORDER_LINE_PRODUCT_FIELD, s.ORDER_LINE_QUANTITY_FIELD,
            time_field, "pk",
        )
        for user_id, product_pk, quantity, timestamp, line_pk in rows.iterator(chunk_size=2000):
            yield Purchase(
                user_id=user_id,
                product_id="" if product_pk is None else str(product_pk),
                quantity=quantity,
                timestamp=timestamp,
                order_line_pk=line_pk,
            )


def _sentences(parts: Iterable[str]) -> str:
    """Join text fields as sentences: "Green tea. Loose leaf. Tea" (no doubled full stops)."""
    text = ""
    for part in parts:
        if text:
            text += " " if text[-1] in ".!?" else ". "
        text += part
    return text


@cache
def get_adapter() -> ShopAdapter:
    """The configured adapter (one instance per process; reset when SHOP_RECS changes)."""
    adapter_class = recs_settings.ADAPTER
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, ShopAdapter)):
        raise ImproperlyConfigured(
            f'SHOP_RECS["ADAPTER"] must be a subclass of shop_recs.adapter.ShopAdapter, '
            f"got {adapter_class!r}"
        )
    return adapter_class()
