"""Shared test helpers: real services for ``@pytest.mark.services`` tests.

A test that needs PostgreSQL or Redis asks for the ``postgres`` / ``redis_url`` fixture (or calls
``require_postgres()`` / ``require_redis()``). When the service cannot be reached the test is
skipped on a developer's machine, but FAILS when ``SHOP_RECS_REQUIRE_SERVICES=1`` (CI), so that
CI can never turn green by skipping the tests that prove the services work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psycopg
import pytest
import redis

REQUIRE_SERVICES_ENV = "SHOP_RECS_REQUIRE_SERVICES"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CONNECT_TIMEOUT_S = 2


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES_ENV) == "1"


def missing_service(reason: str) -> None:
    """Skip the current test, or fail it when services are required (CI)."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1: a service test must not skip)")
    pytest.skip(reason)


def require_postgres(url: str | None = None) -> str:
    """The URL of a reachable PostgreSQL server (``DATABASE_URL`` if it is one).

    Only the server is checked (through its ``postgres`` database): the database named in the
    URL may not exist yet, as pytest-django creates its own ``test_...`` database.
    """
    if url is None:
        database_url = os.environ.get("DATABASE_URL", "")
        url = database_url if database_url.startswith("postgres") else DEFAULT_POSTGRES_URL
    try:
        psycopg.connect(url, dbname="postgres", connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        missing_service(f"PostgreSQL is not reachable at {url}: {exc}")
    return url


def require_redis(url: str | None = None) -> str:
    """The URL of a reachable Redis server (``CELERY_BROKER_URL`` if it is a Redis URL)."""
    if url is None:
        broker_url = os.environ.get("CELERY_BROKER_URL", "")
        url = broker_url if broker_url.startswith("redis") else DEFAULT_REDIS_URL
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        missing_service(f"Redis is not reachable at {url}: {exc}")
    return url


@pytest.fixture
def postgres() -> str:
    """Django's default database is a reachable PostgreSQL (run with DATABASE_URL=postgres://...).

    Returns the server URL. Tests that need transactions across threads also ask for
    ``transactional_db``.
    """
    from django.db import connection

    url = require_postgres()
    if connection.vendor != "postgresql":
        missing_service(
            f"Django's default database is {connection.vendor}, not PostgreSQL: run with "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_recs (scripts/test.sh pass 2)"
        )
    return url


@pytest.fixture
def redis_url() -> str:
    return require_redis()


def drop_broker_connections() -> None:
    """Forget every cached broker connection of the current Celery app.

    `app.close()` alone keeps the producer pool, whose connections still point at the old
    broker, so a test that switched brokers would leak its broker into the next test.
    """
    from celery import current_app

    # Forget (not close) the pools: a producer still holding a closed pool fails later with
    # "Acquire on closed pool"; forgotten connections are closed when collected.
    current_app._after_fork()


@contextlib.contextmanager
def celery_broker(url: str, **conf: object) -> Iterator[None]:
    """Send Celery tasks through `url` (not eagerly) inside the block, then restore."""
    from celery import current_app

    settings = current_app.conf
    changes = {"task_always_eager": False, "broker_url": url, **conf}
    saved = {key: settings[key] for key in changes}
    settings.update(changes)
    drop_broker_connections()
    try:
        yield
    finally:
        settings.update(saved)
        drop_broker_connections()
