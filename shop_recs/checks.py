"""System checks: a misconfigured SHOP_RECS fails ``manage.py check`` with what to fix.

The settings name the host's models and fields as strings, so a typo would otherwise surface
as a crash deep inside training or a page. Ids (add new ones at the end):

- shop_recs.E001  PRODUCT_MODEL is not set
- shop_recs.E002  PRODUCT_MODEL is not an installed model
- shop_recs.E003  a PRODUCT_TEXT_FIELDS entry does not resolve (or names a relation)
- shop_recs.E004  PRODUCT_CATEGORY_FIELD does not resolve (or is many-valued)
- shop_recs.E005  PRODUCT_AVAILABLE_FILTER is not a valid filter of the product model
- shop_recs.E006  ORDER_LINE_MODEL is not an installed model
- shop_recs.E007  an ORDER_LINE_*_FIELD does not resolve to what it must be
- shop_recs.E008  SHOP_RECS has a key the plugin does not know (a typo)
- shop_recs.E009  ADAPTER cannot be imported or is not a ShopAdapter subclass
- shop_recs.E010  SHOP_RECS is not a dict
- shop_recs.E011  PRODUCT_SELECT_RELATED is not a list of the product's single-valued relations
- shop_recs.E012  IMPRESSION_FLUSH_SECONDS is not a number of seconds >= 0
- shop_recs.E013  CO_PURCHASE_COUNT_DELAY is neither None nor a whole number of seconds >= 1
- shop_recs.E014  NEW_PRODUCT_BOOST is not a number > 0
- shop_recs.E015  PRECOMPUTE_ACTIVE_DAYS is neither None nor a whole number of days >= 1
- shop_recs.E016  PRECOMPUTED_SECONDS is not a whole number of seconds >= 1
- shop_recs.W001  GuestSessionMiddleware missing (or before SessionMiddleware): guest events
                  are not merged into the account at login
- shop_recs.W002  PrivateResponseMiddleware missing: shop pages with personal lists are not
                  marked Cache-Control private, so a shared cache could serve them to others
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import FieldError, ImproperlyConfigured, ValidationError
from django.db.models import DateTimeField, Model

from .adapter import (
    FieldPathError,
    ShopAdapter,
    model_from_setting,
    resolve_lookup,
)
from .conf import DEFAULTS, recs_settings

GUEST_MIDDLEWARE = "shop_recs.middleware.GuestSessionMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
PRIVATE_MIDDLEWARE = "shop_recs.middleware.PrivateResponseMiddleware"


@register("shop_recs")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = getattr(settings, "SHOP_RECS", None)
    if raw is not None and not isinstance(raw, dict):
        return [Error(
            f"settings.SHOP_RECS must be a dict, not {type(raw).__name__}.",
            hint='Write SHOP_RECS = {"PRODUCT_MODEL": "shop.Product", ...}.',
            id="shop_recs.E010",
        )]
    messages = _unknown_keys() + _adapter()
    product_model, product_messages = _model("PRODUCT_MODEL", required=True)
    messages += product_messages
    if product_model is not None:
        messages += _product_fields(product_model)
    messages += _order_line(product_model)
    messages += _seconds(
        "IMPRESSION_FLUSH_SECONDS", "shop_recs.E012",
        hint="1.0 writes impressions in a batch every second; 0 writes each in its request.")
    messages += _seconds(
        "KEEP_FRESH_SECONDS", "shop_recs.E017",
        hint="3600 keeps a process's catalogue snapshot and rankings rebuilt on time for an "
             "hour after their last use; 0 rebuilds them when a request finds them too old.")
    messages += _co_purchase_delay() + _new_product_boost()
    messages += _precompute()
    messages += _guest_middleware() + _private_middleware()
    return messages


def _seconds(name: str, check_id: str, *, hint: str) -> list[CheckMessage]:
    value = getattr(recs_settings, name)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return []
    return [Error(f"SHOP_RECS['{name}'] must be a number of seconds >= 0, not {value!r}.",
                  hint=hint, id=check_id)]


def _co_purchase_delay() -> list[CheckMessage]:
    value = recs_settings.CO_PURCHASE_COUNT_DELAY
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return []
    return [Error(
        f"SHOP_RECS['CO_PURCHASE_COUNT_DELAY'] must be None or a whole number of seconds >= 1, "
        f"not {value!r}.",
        hint="600 counts co-purchases ten minutes after a purchase; None leaves counting to "
             "training runs, order imports and the shop_recs.count_co_purchases task.",
        id="shop_recs.E013",
    )]


def _new_product_boost() -> list[CheckMessage]:
    value = recs_settings.NEW_PRODUCT_BOOST
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return []
    return [Error(
        f"SHOP_RECS['NEW_PRODUCT_BOOST'] must be a number > 0, not {value!r}.",
        hint="1.0 places new products as the model scores them; 1.1 gives them a little more "
             "room in for-you lists.",
        id="shop_recs.E014",
    )]


def _precompute() -> list[CheckMessage]:
    messages = []
    days = recs_settings.PRECOMPUTE_ACTIVE_DAYS
    if days is not None and not (isinstance(days, int) and not isinstance(days, bool)
                                 and days >= 1):
        messages.append(Error(
            f"SHOP_RECS['PRECOMPUTE_ACTIVE_DAYS'] must be None or a whole number of days >= 1, "
            f"not {days!r}.",
            hint="30 computes the for-you lists of the shoppers active in the last 30 days "
                 "ahead; None computes every list in its request.",
            id="shop_recs.E015",
        ))
    seconds = recs_settings.PRECOMPUTED_SECONDS
    if not (isinstance(seconds, int) and not isinstance(seconds, bool) and seconds >= 1):
        messages.append(Error(
            f"SHOP_RECS['PRECOMPUTED_SECONDS'] must be a whole number of seconds >= 1, "
            f"not {seconds!r}.",
            hint="86400 keeps the lists computed ahead for a day.",
            id="shop_recs.E016",
        ))
    return messages


def _unknown_keys() -> list[CheckMessage]:
    messages = []
    for key in recs_settings.unknown_keys():
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        messages.append(Error(
            f"SHOP_RECS has an unknown key {key!r}.",
            hint=(f"Did you mean {close[0]!r}? " if close else "")
            + "The keys and their defaults are listed in shop_recs/conf.py.",
            id="shop_recs.E008",
        ))
    return messages


def _adapter() -> list[CheckMessage]:
    path = recs_settings.user_settings.get("ADAPTER", DEFAULTS["ADAPTER"])
    try:
        adapter_class = recs_settings.ADAPTER
    except ImportError as exc:
        return [Error(
            f'SHOP_RECS["ADAPTER"] = {path!r} cannot be imported: {exc}',
            hint="Give the dotted path of a ShopAdapter subclass, e.g. 'myshop.recs.MyAdapter'.",
            id="shop_recs.E009",
        )]
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, ShopAdapter)):
        return [Error(
            f'SHOP_RECS["ADAPTER"] = {path!r} is not a subclass of shop_recs.adapter.ShopAdapter.',
            hint="Subclass shop_recs.adapter.ShopAdapter and override the methods you need.",
            id="shop_recs.E009",
        )]
    return []


def _model(name: str, *, required: bool) -> tuple[type[Model] | None, list[CheckMessage]]:
    try:
        return model_from_setting(name, required=required), []
    except ImproperlyConfigured as exc:
        missing = getattr(recs_settings, name) is None
        error_id = "shop_recs.E001" if missing else (
            "shop_recs.E002" if name == "PRODUCT_MODEL" else "shop_recs.E006"
        )
        return None, [Error(
            str(exc),
            hint='Use "app_label.ModelName" of a model in INSTALLED_APPS, e.g. "shop.Product".',
            id=error_id,
        )]


def _product_fields(model: type[Model]) -> list[CheckMessage]:
    label = model._meta.label
    messages: list[CheckMessage] = []
    text_fields = recs_settings.PRODUCT_TEXT_FIELDS
    if not isinstance(text_fields, list | tuple) or not text_fields:
        messages.append(Error(
            f'SHOP_RECS["PRODUCT_TEXT_FIELDS"] must be a non-empty list, got {text_fields!r}.',
            hint='List the fields that describe a product, e.g. ["title", "description"].',
            id="shop_recs.E003",
        ))
    else:
        for lookup in text_fields:
            problem = _lookup_problem(
                model, lookup, lambda r: "it is a relation, not text" if r.is_relation else None
            )
            if problem:
                messages.append(Error(
                    f'SHOP_RECS["PRODUCT_TEXT_FIELDS"] entry {lookup!r} on {label}: {problem}.',
                    hint="Name a text field, following relations with '__' "
                    "(e.g. 'category__name' rather than 'category').",
                    id="shop_recs.E003",
                ))
    category = recs_settings.PRODUCT_CATEGORY_FIELD
    if category is not None:
        problem = _lookup_problem(
            model, category, lambda r: "it has several values per product" if r.many else None
        )
        if problem:
            messages.append(Error(
                f'SHOP_RECS["PRODUCT_CATEGORY_FIELD"] = {category!r} on {label}: {problem}.',
                hint="Name one field (or foreign key) holding the product's category, "
                "or set it to None.",
                id="shop_recs.E004",
            ))
    available = recs_settings.PRODUCT_AVAILABLE_FILTER
    problem = None
    if not isinstance(available, dict):
        problem = f"it must be a dict of filter arguments, not {type(available).__name__}"
    else:
        try:
            model._default_manager.filter(**available).query  # noqa: B018 - builds, never runs
        except (FieldError, ValueError, TypeError, ValidationError) as exc:
            problem = str(exc)
    if problem:
        messages.append(Error(
            f'SHOP_RECS["PRODUCT_AVAILABLE_FILTER"] = {available!r} is not a valid filter of '
            f"{label}: {problem}",
            hint='Give keyword arguments for .filter(), e.g. {"active": True, "stock__gt": 0}.',
            id="shop_recs.E005",
        ))
    return messages + _select_related(model)


def _select_related(model: type[Model]) -> list[CheckMessage]:
    relations = recs_settings.PRODUCT_SELECT_RELATED
    if relations is None:
        return []
    problem = None
    if not isinstance(relations, list | tuple) or not all(isinstance(r, str) for r in relations):
        problem = "it must be a list of relation names"
    else:
        try:
            str(model._default_manager.select_related(*relations).query)  # compiles, never runs
        except (FieldError, ValueError) as exc:
            problem = str(exc)
    if not problem:
        return []
    return [Error(
        f'SHOP_RECS["PRODUCT_SELECT_RELATED"] = {relations!r} on {model._meta.label}: {problem}',
        hint="Name the foreign keys your list templates show, e.g. ['category', 'brand'], "
        "or leave it unset.",
        id="shop_recs.E011",
    )]


def _order_line(product_model: type[Model] | None) -> list[CheckMessage]:
    model, messages = _model("ORDER_LINE_MODEL", required=False)
    if model is None:
        return messages
    user_model = settings.AUTH_USER_MODEL

    def points_to(target_label: str) -> Callable[[Any], str | None]:
        def rule(r: Any) -> str | None:
            if r.many or not r.is_relation:
                return f"it must be a foreign key to {target_label}"
            if r.related_model._meta.label_lower != target_label.lower():
                return f"it points to {r.related_model._meta.label}, not to {target_label}"
            return None
        return rule

    def plain_value(r: Any) -> str | None:
        return "it must be a single plain field" if r.is_relation or r.many else None

    def date_time(r: Any) -> str | None:
        return None if isinstance(r.field, DateTimeField) and not r.many else (
            "it must be a DateTimeField"
        )

    rules: dict[str, Callable[[Any], str | None]] = {
        "ORDER_LINE_USER_FIELD": points_to(user_model),
        "ORDER_LINE_QUANTITY_FIELD": plain_value,
        "ORDER_LINE_TIME_FIELD": date_time,
    }
    if product_model is not None:
        rules["ORDER_LINE_PRODUCT_FIELD"] = points_to(product_model._meta.label)
    for name, rule in rules.items():
        lookup = getattr(recs_settings, name)
        problem = _lookup_problem(model, lookup, rule)
        if problem:
            messages.append(Error(
                f'SHOP_RECS["{name}"] = {lookup!r} on {model._meta.label}: {problem}.',
                hint="Name the field with a Django lookup path from the order line, "
                "e.g. 'order__user' or 'order__created_at'.",
                id="shop_recs.E007",
            ))
    return messages


def _lookup_problem(
    model: type[Model], lookup: Any, rule: Callable[[Any], str | None]
) -> str | None:
    try:
        resolved = resolve_lookup(model, lookup)
    except FieldPathError as exc:
        return str(exc)
    return rule(resolved)


def _guest_middleware() -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", []) or [])
    if GUEST_MIDDLEWARE in middleware and SESSION_MIDDLEWARE in middleware and (
        middleware.index(GUEST_MIDDLEWARE) > middleware.index(SESSION_MIDDLEWARE)
    ):
        return []
    return [Warning(
        f"{GUEST_MIDDLEWARE} is not in MIDDLEWARE after {SESSION_MIDDLEWARE}: a guest's "
        "events will not be attached to their account when they sign in.",
        hint=f"Add {GUEST_MIDDLEWARE!r} to MIDDLEWARE, after SessionMiddleware.",
        id="shop_recs.W001",
    )]


def _private_middleware() -> list[CheckMessage]:
    if PRIVATE_MIDDLEWARE in (getattr(settings, "MIDDLEWARE", []) or []):
        return []
    return [Warning(
        f"{PRIVATE_MIDDLEWARE} is not in MIDDLEWARE: shop pages that show a shopper's own "
        "recommendations are not marked Cache-Control: private, so a shared cache (a CDN, a "
        "proxy) could serve one shopper's page to another.",
        hint=f"Add {PRIVATE_MIDDLEWARE!r} to MIDDLEWARE, after SessionMiddleware.",
        id="shop_recs.W002",
    )]
