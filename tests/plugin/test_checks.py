"""System checks turn each SHOP_RECS mistake into an error that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from shop_recs.adapter import ShopAdapter

GUEST = "shop_recs.middleware.GuestSessionMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"


class FussyAdapter(ShopAdapter):
    """A shop's own adapter: the checks must accept a subclass."""


def shop_recs_messages(**overrides: Any) -> list:
    config = {**settings.SHOP_RECS, **overrides}
    with override_settings(SHOP_RECS=config):
        return run_checks(tags=["shop_recs"])


def only(messages: list, error_id: str):
    matching = [m for m in messages if m.id == error_id]
    assert len(matching) == 1, [(m.id, m.msg) for m in messages]
    return matching[0]


def test_the_demo_configuration_passes() -> None:
    assert run_checks(tags=["shop_recs"]) == []


def test_missing_product_model() -> None:
    with override_settings(SHOP_RECS={}):
        message = only(run_checks(tags=["shop_recs"]), "shop_recs.E001")
    assert "PRODUCT_MODEL" in message.msg and "not set" in message.msg


@pytest.mark.parametrize("label", ["demo.Nope", "Product", "nowhere.Product"])
def test_unknown_product_model(label: str) -> None:
    message = only(shop_recs_messages(PRODUCT_MODEL=label), "shop_recs.E002")
    assert repr(label) in message.msg
    assert "app_label.ModelName" in message.hint


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["title", "titel"], "demo.Product has no field 'titel'"),
        (["category__nmae"], "demo.Category has no field 'nmae' (in 'category__nmae')"),
        (["category"], "it is a relation, not text"),
        (["title__name"], "is not a relation"),
    ],
)
def test_bad_text_field(fields: list[str], expected: str) -> None:
    message = only(shop_recs_messages(PRODUCT_TEXT_FIELDS=fields), "shop_recs.E003")
    assert expected in message.msg


def test_bad_text_field_lists_the_fields_that_exist() -> None:
    message = only(shop_recs_messages(PRODUCT_TEXT_FIELDS=["titel"]), "shop_recs.E003")
    assert "title" in message.msg.split("its fields are:")[1]


def test_empty_text_fields() -> None:
    message = only(shop_recs_messages(PRODUCT_TEXT_FIELDS=[]), "shop_recs.E003")
    assert "non-empty list" in message.msg


def test_text_fields_may_follow_relations_and_to_many_relations() -> None:
    fields = ["title", "category__name", "order_lines__quantity"]
    assert shop_recs_messages(PRODUCT_TEXT_FIELDS=fields) == []


@pytest.mark.parametrize(
    ("field", "expected"),
    [("categroy", "has no field 'categroy'"), ("order_lines", "several values per product")],
)
def test_bad_category_field(field: str, expected: str) -> None:
    message = only(shop_recs_messages(PRODUCT_CATEGORY_FIELD=field), "shop_recs.E004")
    assert expected in message.msg


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({"in_stock": True}, "in_stock"),
        ({"stock__gt": "lots"}, "lots"),
        (["active"], "must be a dict"),
    ],
)
def test_bad_available_filter(available: Any, expected: str) -> None:
    message = only(shop_recs_messages(PRODUCT_AVAILABLE_FILTER=available), "shop_recs.E005")
    assert expected in message.msg


@pytest.mark.parametrize(
    ("relations", "expected"),
    [
        (["nope"], "nope"),
        (["title"], "title"),  # a plain field is not a relation
        ("category", "list of relation names"),
    ],
)
def test_bad_select_related(relations: Any, expected: str) -> None:
    message = only(shop_recs_messages(PRODUCT_SELECT_RELATED=relations), "shop_recs.E011")
    assert expected in message.msg


SECONDS_SETTINGS = [("IMPRESSION_FLUSH_SECONDS", "shop_recs.E012"),
                    ("KEEP_FRESH_SECONDS", "shop_recs.E017")]


@pytest.mark.parametrize("value", [-1, "1", None, True])
@pytest.mark.parametrize(("setting", "check_id"), SECONDS_SETTINGS)
def test_bad_seconds(setting: str, check_id: str, value: Any) -> None:
    message = only(shop_recs_messages(**{setting: value}), check_id)
    assert setting in message.msg and repr(value) in message.msg


@pytest.mark.parametrize("value", [0, 2, 0.5])
@pytest.mark.parametrize(("setting", "check_id"), SECONDS_SETTINGS)
def test_seconds_pass(setting: str, check_id: str, value: float) -> None:
    assert shop_recs_messages(**{setting: value}) == []


@pytest.mark.parametrize("value", [0, -5, 1.5, "600", True])
def test_bad_co_purchase_count_delay(value: Any) -> None:
    message = only(shop_recs_messages(CO_PURCHASE_COUNT_DELAY=value), "shop_recs.E013")
    assert repr(value) in message.msg


@pytest.mark.parametrize("value", [None, 1, 3600])
def test_co_purchase_count_delay_passes(value: int | None) -> None:
    assert shop_recs_messages(CO_PURCHASE_COUNT_DELAY=value) == []


@pytest.mark.parametrize("value", [0, -1.5, "1.2", None, True])
def test_bad_new_product_boost(value: Any) -> None:
    message = only(shop_recs_messages(NEW_PRODUCT_BOOST=value), "shop_recs.E014")
    assert repr(value) in message.msg


@pytest.mark.parametrize("value", [1, 1.1, 0.5])
def test_new_product_boost_passes(value: float) -> None:
    assert shop_recs_messages(NEW_PRODUCT_BOOST=value) == []


def test_select_related_of_a_real_relation_passes() -> None:
    assert shop_recs_messages(PRODUCT_SELECT_RELATED=["category"]) == []


def test_unknown_order_line_model() -> None:
    message = only(shop_recs_messages(ORDER_LINE_MODEL="demo.Line"), "shop_recs.E006")
    assert "'demo.Line'" in message.msg


def test_no_order_line_model_is_allowed() -> None:
    assert shop_recs_messages(ORDER_LINE_MODEL=None) == []


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("ORDER_LINE_USER_FIELD", "order", "points to demo.Order, not to auth.User"),
        ("ORDER_LINE_USER_FIELD", "order__buyer", "demo.Order has no field 'buyer'"),
        ("ORDER_LINE_PRODUCT_FIELD", "order", "points to demo.Order, not to demo.Product"),
        ("ORDER_LINE_PRODUCT_FIELD", "quantity", "must be a foreign key to demo.Product"),
        ("ORDER_LINE_QUANTITY_FIELD", "product", "must be a single plain field"),
        ("ORDER_LINE_TIME_FIELD", "quantity", "must be a DateTimeField"),
        ("ORDER_LINE_TIME_FIELD", "created_at", "demo.OrderLine has no field 'created_at'"),
    ],
)
def test_bad_order_line_field(setting: str, value: str, expected: str) -> None:
    message = only(shop_recs_messages(**{setting: value}), "shop_recs.E007")
    assert setting in message.msg and expected in message.msg


def test_unknown_key_suggests_the_likely_one() -> None:
    message = only(shop_recs_messages(PRODUCT_TEXT_FIELD=["title"]), "shop_recs.E008")
    assert "'PRODUCT_TEXT_FIELD'" in message.msg
    assert "Did you mean 'PRODUCT_TEXT_FIELDS'?" in message.hint


def test_adapter_that_cannot_be_imported() -> None:
    message = only(shop_recs_messages(ADAPTER="myshop.recs.MissingAdapter"), "shop_recs.E009")
    assert "cannot be imported" in message.msg and "myshop" in message.msg


def test_adapter_that_is_not_a_shop_adapter() -> None:
    message = only(shop_recs_messages(ADAPTER="django.contrib.auth.models.User"), "shop_recs.E009")
    assert "not a subclass of shop_recs.adapter.ShopAdapter" in message.msg


def test_a_subclassed_adapter_passes() -> None:
    assert shop_recs_messages(ADAPTER=f"{__name__}.FussyAdapter") == []


def test_shop_recs_must_be_a_dict() -> None:
    with override_settings(SHOP_RECS=["demo.Product"]):
        message = only(run_checks(tags=["shop_recs"]), "shop_recs.E010")
    assert "must be a dict" in message.msg


@pytest.mark.parametrize(
    "middleware",
    [
        [SESSION],  # missing
        [GUEST, SESSION],  # before the session exists
    ],
)
def test_guest_middleware_missing_or_misplaced(middleware: list[str]) -> None:
    with override_settings(MIDDLEWARE=middleware):
        message = only(run_checks(tags=["shop_recs"]), "shop_recs.W001")
    assert "after SessionMiddleware" in message.hint


def test_private_response_middleware_missing() -> None:
    without = [m for m in settings.MIDDLEWARE if not m.endswith("PrivateResponseMiddleware")]
    assert without != list(settings.MIDDLEWARE)
    with override_settings(MIDDLEWARE=without):
        message = only(run_checks(tags=["shop_recs"]), "shop_recs.W002")
    assert "Cache-Control: private" in message.msg


def test_manage_py_check_fails_on_an_error() -> None:
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRODUCT_MODEL": "demo.Nope"}), \
            pytest.raises(SystemCheckError, match="shop_recs.E002"):
        call_command("check")
