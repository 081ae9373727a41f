"""Every REST endpoint fuzzed from its own OpenAPI schema (schemathesis, through the WSGI app).

Whatever a client sends, the API must answer it: never a 5xx, and every 4xx with a JSON body
that says what is wrong. Requests are made twice over: as an anonymous guest and as a staff
user with a token (who reaches the staff-only endpoint and every branch behind it), on a shop
with a trained, active model. Examples are bounded so the whole run takes seconds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis import GenerationMode

from demo.wsgi import application

SCHEMA_PATH = "/recs/api/schema/?format=json"
API = "/recs/api"
EXAMPLES_PER_OPERATION = 20  # x 2 modes x 9 operations x 2 users: ~15 s on an idle 2-core box
NO_THROTTLING = {**django_settings.REST_FRAMEWORK,
                 "DEFAULT_THROTTLE_RATES": {"shop_recs": None, "shop_recs_events": None}}


def four_xx_says_what_is_wrong(response: Any) -> None:
    """A 4xx must be JSON with at least one non-empty message in it."""
    if not 400 <= response.status_code < 500:
        return
    headers = {name.lower(): values for name, values in response.headers.items()}
    content_type = headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered as {content_type!r}: {response.text[:200]!r}"
    )
    body = json.loads(response.text)
    assert body and _has_message(body), f"{response.status_code} without a message: {body!r}"


def _has_message(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):
        return any(_has_message(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_message(v) for v in value)
    return False


def api_routes() -> list[str]:
    """Every route of the REST API but the schema itself: all must be in the schema."""
    from shop_recs.api.urls import urlpatterns

    return [str(p.pattern) for p in urlpatterns if p.name != "schema"]


@contextlib.contextmanager
def database_kept_open() -> Iterator[None]:
    """The raw WSGI app closes the database connection after each request, which would end
    the test's transaction: keep it, as Django's own test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def fuzz(headers: dict[str, str]) -> dict[str, str]:
    """Operation label -> the first failure found, over every operation of the schema, with
    valid (positive) and invalid (negative) input."""
    with database_kept_open():
        api_schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, application)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == len(api_routes()), [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), derandomize=True,
                      phases=[Phase.explicit, Phase.generate])
            def run(case: Any) -> None:
                response = case.call(headers=headers)
                case.validate_response(
                    response, checks=[schemathesis.checks.not_a_server_error],
                    additional_checks=[lambda ctx, resp, case: four_xx_says_what_is_wrong(resp)],
                )

            try:
                with override_settings(REST_FRAMEWORK=NO_THROTTLING), database_kept_open():
                    run()
            except (Exception, BaseExceptionGroup) as exc:  # the failing example's error
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]
    return failures


def test_a_guest_cannot_make_the_api_fail(recs_shop, active_model) -> None:
    failures = fuzz({})
    assert not failures, "\n\n".join(f"{label}: {error}" for label, error in failures.items())


def test_staff_cannot_make_the_api_fail(recs_shop, active_model) -> None:
    token = Token.objects.get_or_create(user=recs_shop.staff)[0].key
    failures = fuzz({"Authorization": f"Token {token}"})
    assert not failures, "\n\n".join(f"{label}: {error}" for label, error in failures.items())


@pytest.mark.parametrize("method,path,body", [
    ("get", f"{API}/for-you/", None),
    ("get", f"{API}/products/11/similar/", None),
    ("get", f"{API}/products/11/bought-together/", None),
    ("get", f"{API}/search/?q=tea", None),
    ("get", f"{API}/search/suggest/?q=te", None),
    ("get", f"{API}/ads/?placement=search", None),
    ("post", f"{API}/events/", {"events": [{"kind": "view", "product": "11"}]}),
    ("post", f"{API}/feedback/", {"token": "x"}),
])
def test_throttling_answers_429_with_json(method, path, body, recs_shop) -> None:
    """Past the rate, each endpoint answers 429 (with a JSON detail and Retry-After)."""
    api = APIClient()
    tight = {**django_settings.REST_FRAMEWORK,
             "DEFAULT_THROTTLE_RATES": {"shop_recs": "1/min", "shop_recs_events": "1/min"}}
    with override_settings(REST_FRAMEWORK=tight):
        first = getattr(api, method)(path, body, format="json")
        second = getattr(api, method)(path, body, format="json")
    assert first.status_code < 429
    assert second.status_code == 429
    assert "throttled" in second.json()["detail"] and second["Retry-After"]


LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize("event", [
    {"kind": "view", "product": "11", "context": {"note": "a\x00b"}},
    {"kind": "view", "product": "11", "context": {"a\x00": 1}},
    {"kind": "view", "product": "11", "context": {"list": ["\x00"]}},
    {"kind": "view", "product": "11", "context": {"note": "b" + LONE_SURROGATE}},
    {"kind": "view", "product": "11", "context": {"a" + LONE_SURROGATE: "b"}},
    {"kind": "view", "product": "1" + LONE_SURROGATE},
    {"kind": "search", "query": "tea\x00"},
    {"kind": "view", "product": "11", "idempotency_key": "k\x00"},
], ids=["nul-value", "nul-key", "nul-in-list", "surrogate-value", "surrogate-key",
        "surrogate-product", "nul-query", "nul-key"])
def test_text_no_database_can_store_is_a_400(event, recs_shop) -> None:
    """Found by fuzzing: NUL in a context (PostgreSQL's jsonb refuses it) and lone surrogates
    (not encodable as UTF-8) were 500s. JSON is sent as ASCII escapes, as a client would."""
    api = APIClient()
    body = json.dumps({"events": [event, {"kind": "view", "product": "12"}]})
    response = api.post(f"{API}/events/", body, content_type="application/json")
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first["status"] == "invalid" and _has_message(first["errors"])
    assert second["status"] == "stored"


def test_a_literal_backslash_u0000_in_a_context_is_just_text(recs_shop) -> None:
    api = APIClient()
    event = {"kind": "view", "product": "11", "context": {"note": "\\u0000"}}
    response = api.post(f"{API}/events/", {"events": [event]}, format="json")
    assert response.json()["stored"] == 1


@pytest.mark.parametrize("query", ["tea\x00", "\x00"])
def test_the_demo_search_page_with_a_nul_query_answers(client, recs_shop, query) -> None:
    response = client.get("/search/", {"q": query})
    assert response.status_code in (200, 400)
