"""require_postgres / require_redis skip on a developer machine but fail in CI."""

from __future__ import annotations

import pytest

from tests.conftest import REQUIRE_SERVICES_ENV, require_postgres, require_redis

NOWHERE_POSTGRES = "postgres://postgres@127.0.0.1:1/postgres"
NOWHERE_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("helper", "url", "name"),
    [(require_postgres, NOWHERE_POSTGRES, "PostgreSQL"), (require_redis, NOWHERE_REDIS, "Redis")],
)
def test_an_unreachable_service_skips_locally_and_fails_in_ci(
    monkeypatch, helper, url: str, name: str
) -> None:
    monkeypatch.delenv(REQUIRE_SERVICES_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{name} is not reachable"):
        helper(url)
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="a service test must not skip"):
        helper(url)
