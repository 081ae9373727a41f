"""A web process freezes its long-lived objects after loading a model, and a swap leaks nothing."""

from __future__ import annotations

import gc
import weakref

import pytest
from django.conf import settings
from django.test import override_settings

from shop_recs.registry import GateDecision, store_version
from shop_recs.serving import model_holder
from tests.plugin.recs_fixtures import activate


@pytest.fixture
def freezing():
    """SERVING_GC_FREEZE on (tests/settings.py turns it off), undone afterwards."""
    model_holder.reset()
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "SERVING_GC_FREEZE": True}):
        yield
    model_holder.reset()
    gc.unfreeze()


def test_loading_a_model_freezes_what_is_alive(recs_shop, trained_artifact, freezing) -> None:
    activate(*trained_artifact)
    gc.unfreeze()
    assert model_holder.get() is not None
    assert gc.get_freeze_count() > 0


def test_with_the_setting_off_nothing_is_frozen(recs_shop, trained_artifact) -> None:
    gc.unfreeze()
    activate(*trained_artifact)
    try:
        assert model_holder.get() is not None
        assert gc.get_freeze_count() == 0
    finally:
        model_holder.reset()


def test_a_replaced_model_is_freed_although_it_was_frozen(
    recs_shop, trained_artifact, freezing
) -> None:
    """The recommender holds reference cycles (its neighbour cache calls back into it), so
    only the collector frees it: frozen and never unfrozen, every swap would leak a model."""
    first = activate(*trained_artifact)
    loaded = model_holder.get()
    assert loaded is not None and loaded.version_id == first.pk
    old = weakref.ref(loaded.recommender)
    del loaded
    second = store_version(None, *trained_artifact, {}, GateDecision(True, "test"))
    second.activate()
    model_holder.refresh()  # what a request does after MODEL_RELOAD_INTERVAL
    assert model_holder.get().version_id == second.pk
    assert old() is None
