"""Per-process values rebuilt in the background: after the first build no caller waits for one."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from shop_recs.services.catalog import catalog
from shop_recs.services.refreshed import Refreshed

WAIT = 5.0  # seconds a test waits for a background rebuild before it fails


class Builds:
    """A build function that counts its calls and, when asked, blocks until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail = False

    def __call__(self) -> int:
        self.calls += 1
        number = self.calls  # the value this build makes
        self.started.set()
        assert self.hold.wait(WAIT), "the test never released the build"
        if self.fail:
            raise RuntimeError("the database is gone")
        return number


def settled(value: Refreshed, expected: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if value._value == expected and not value._rebuilding:
            return True
        time.sleep(0.01)
    return False


def built_once() -> tuple[Builds, list[float], Refreshed]:
    """A value built once (it is 1), with the age limit the test sets through the list."""
    build, max_age = Builds(), [3600.0]
    value = Refreshed(build, lambda: max_age[0], "test value")
    assert value.get() == 1
    return build, max_age, value


def start_a_blocked_rebuild(build: Builds, max_age: list[float], value: Refreshed) -> None:
    """Make the value too old; the next caller gets it at once and starts a rebuild, which
    waits for ``build.hold``."""
    build.hold.clear()
    build.started.clear()
    max_age[0] = 0.0
    assert value.get() == 1
    assert build.started.wait(WAIT)


def test_the_first_use_builds_and_later_uses_reuse_it() -> None:
    build, _, value = built_once()
    assert value.get() == 1
    assert build.calls == 1


def test_an_old_value_is_served_while_one_rebuild_runs_in_the_background() -> None:
    build, max_age, value = built_once()
    start_a_blocked_rebuild(build, max_age, value)
    assert [value.get() for _ in range(5)] == [1] * 5  # no second rebuild meanwhile
    assert build.calls == 2
    build.hold.set()
    assert settled(value, 2)
    max_age[0] = 3600.0
    assert value.get() == 2 and build.calls == 2


def test_an_outdated_value_is_rebuilt_whatever_its_age() -> None:
    build, outdated = Builds(), [False]
    value = Refreshed(build, lambda: 3600, "test value", outdated=lambda v: outdated[0])
    assert value.get() == 1 and value.get() == 1 and build.calls == 1
    outdated[0] = True  # e.g. a new model version
    assert value.get() == 1  # the old value meanwhile
    assert settled(value, 2)


def test_a_failed_rebuild_keeps_the_old_value_and_is_tried_an_interval_later(caplog) -> None:
    build, max_age, value = built_once()
    build.fail = True
    max_age[0] = 0.0
    with caplog.at_level(logging.ERROR, logger="shop_recs"):
        assert value.get() == 1
        assert settled(value, 1) and build.calls == 2
    assert "rebuilding the test value failed; keeping the old one" in caplog.text
    max_age[0] = 60.0
    assert value.get() == 1 and build.calls == 2  # the failure counts as a fresh try
    build.fail, max_age[0] = False, 0.0
    value.get()
    assert settled(value, 3)


def test_a_value_invalidated_during_a_rebuild_is_built_afresh() -> None:
    build, max_age, value = built_once()
    start_a_blocked_rebuild(build, max_age, value)  # from the data as it was
    value.invalidate()  # the data changed
    max_age[0] = 3600.0
    build.hold.set()
    assert value.get() == 3  # built now, in this call
    assert settled(value, 3)  # the rebuild ended, and its 2 was discarded


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_rebuild_although_its_parent_was_rebuilding() -> None:
    build, max_age, value = built_once()
    start_a_blocked_rebuild(build, max_age, value)
    child = os.fork()
    if child == 0:  # the child has no rebuild thread: it must be able to start its own
        build.hold.set()
        value.get()
        os._exit(0 if settled(value, 3) else 1)
    _, status = os.waitpid(child, 0)
    build.hold.set()
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.fixture
def kept_fresh(settings):
    """Values kept fresh by their timers (off in the test settings); invalidated at the end,
    which stops their timers."""
    settings.SHOP_RECS = {**settings.SHOP_RECS, "KEEP_FRESH_SECONDS": 60}
    values: list[Refreshed] = []
    yield values
    for value in values:
        value.invalidate()
        while value._rebuilding:
            time.sleep(0.01)


def test_a_value_in_use_is_rebuilt_on_time_with_no_caller(kept_fresh) -> None:
    build = Builds()
    value = Refreshed(build, lambda: 0.2, "test value")
    kept_fresh.append(value)
    assert value.get() == 1
    deadline = time.monotonic() + WAIT
    while value.current == 1 and time.monotonic() < deadline:  # `current` starts nothing
        time.sleep(0.01)
    assert value.current >= 2  # rebuilt by its timer: the next caller finds it fresh


def test_a_value_unread_for_long_is_left_to_its_next_caller(kept_fresh, settings) -> None:
    settings.SHOP_RECS = {**settings.SHOP_RECS, "KEEP_FRESH_SECONDS": 0.05}
    build = Builds()
    value = Refreshed(build, lambda: 0.2, "test value")
    kept_fresh.append(value)
    assert value.get() == 1
    time.sleep(0.6)  # the timer fired, long after the last read: no rebuild
    assert build.calls == 1 and value.current == 1
    assert value.get() == 1  # too old: this caller starts the rebuild
    assert settled(value, 2)


def test_an_invalidated_value_has_no_timer(kept_fresh) -> None:
    build = Builds()
    value = Refreshed(build, lambda: 0.2, "test value")
    kept_fresh.append(value)
    assert value.get() == 1
    value.invalidate()
    time.sleep(0.6)
    assert build.calls == 1 and value.current is None


def test_without_keep_fresh_only_a_caller_starts_a_rebuild() -> None:  # the test settings' 0
    build = Builds()
    value = Refreshed(build, lambda: 0.2, "test value")
    assert value.get() == 1
    time.sleep(0.6)
    assert build.calls == 1
    assert value.get() == 1 and settled(value, 2)


def test_the_catalogue_snapshot_is_kept_fresh_while_no_request_comes(transactional_db, shop,
                                                                     settings,
                                                                     kept_fresh) -> None:
    settings.SHOP_RECS = {**settings.SHOP_RECS, "CATALOG_REFRESH_SECONDS": 0.2}
    kept_fresh.append(catalog)
    tea = str(shop.green_tea.pk)
    assert tea in catalog.get().available
    shop.green_tea.active = False
    shop.green_tea.save()
    deadline = time.monotonic() + WAIT
    while tea in catalog.current.available and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tea not in catalog.current.available  # the first request after the pause has it


def test_the_catalogue_snapshot_is_rebuilt_from_the_database_in_a_thread(transactional_db, shop,
                                                                          settings) -> None:
    settings.SHOP_RECS = {**settings.SHOP_RECS, "CATALOG_REFRESH_SECONDS": 0}
    tea = str(shop.green_tea.pk)
    assert tea in catalog.get().available
    shop.green_tea.active = False
    shop.green_tea.save()
    assert tea in catalog.get().available  # the old snapshot, while the new one is built
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and (tea in catalog._value.available or
                                           catalog._rebuilding):
        time.sleep(0.01)
    assert tea not in catalog.get().available
    while catalog._rebuilding:  # let the last rebuild close its connection
        time.sleep(0.01)
