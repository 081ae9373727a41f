"""For-you lists computed ahead (services/precomputed.py): the same list the request would make,
read instead of computed while the shopper has done nothing since; computed live again after
any new event, for a guest, another model version, a category or a longer list; kept per
shopper; started by each model activation."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from celery import current_app
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.checks import run_checks
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from demo.models import Product
from recsys_core.inference import Recommender
from shop_recs.jobs import PRECOMPUTE_TASK, schedule_precompute
from shop_recs.models import Event, ModelVersion
from shop_recs.services import Shopper, for_you, precomputed
from shop_recs.services.new_products import placed_model, with_new_products
from shop_recs.services.recommendations import precompute_for_you
from shop_recs.serving import LoadedModel
from tests.plugin.recs_fixtures import NEW_TEA, TEA, RecsShop, activate


def without_precompute():
    return override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRECOMPUTE_ACTIVE_DAYS": None})


@pytest.fixture
def model_calls(active_model: LoadedModel, monkeypatch) -> list[int]:
    return count_model_calls(monkeypatch)


def count_model_calls(monkeypatch) -> list[int]:
    """How many histories each call of the model's ranking got (a request's: one)."""
    calls: list[int] = []
    rank = Recommender.recommend_batch

    def counted(self, histories, *args, **kwargs):
        calls.append(len(histories))
        return rank(self, histories, *args, **kwargs)

    # On the class: the model serves with new products placed in a copy of its recommender.
    monkeypatch.setattr(Recommender, "recommend_batch", counted)
    return calls


def shown(recs) -> list[tuple[str, str, str]]:
    return [(item.product_id, item.reason, item.model_version) for item in recs]


def test_a_list_computed_ahead_is_the_one_the_request_would_make(
    recs_shop: RecsShop, active_model, model_calls
) -> None:
    recs_shop.view(11, 12, 13, user=recs_shop.alice)
    recs_shop.view(21, user=recs_shop.bob)
    recs_shop.buy(14, user=recs_shop.alice)
    alice, bob = Shopper.for_user(recs_shop.alice), Shopper.for_user(recs_shop.bob)
    with without_precompute():
        live = {"alice": for_you(alice, 5), "bob": for_you(bob, 5)}
    assert model_calls == [1, 1]

    assert precompute_for_you() == 2
    assert model_calls[2:] == [2]  # both shoppers in one pass
    ahead = {"alice": for_you(alice, 5), "bob": for_you(bob, 5)}
    assert model_calls[3:] == []  # read, not computed
    for name in ("alice", "bob"):
        assert ahead[name].source == "model" and len(ahead[name]) == 5
        assert shown(ahead[name]) == shown(live[name])
    assert "14" not in ahead["alice"].product_ids  # bought: still hidden
    assert ahead["alice"].product_ids != ahead["bob"].product_ids


def test_any_new_event_makes_the_next_list_live_again(recs_shop, active_model,
                                                      model_calls) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    shopper = Shopper.for_user(recs_shop.alice)
    precompute_for_you()
    first = for_you(shopper, 3)
    calls = len(model_calls)
    recs_shop.view(*first.product_ids[:1], user=recs_shop.alice)
    after = for_you(shopper, 3)
    assert len(model_calls) == calls + 1
    assert first.product_ids[0] not in after.product_ids  # now seen


def test_the_request_still_drops_what_sold_out_since(recs_shop, active_model,
                                                     model_calls) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    shopper = Shopper.for_user(recs_shop.alice)
    precompute_for_you()
    first = for_you(shopper, 3).product_ids
    Product.objects.filter(pk=first[0]).update(stock=0)
    calls = len(model_calls)
    after = for_you(shopper, 3).product_ids
    assert len(model_calls) == calls  # still the list computed ahead
    assert first[0] not in after and len(after) == 3


@pytest.mark.parametrize("request_kwargs", [{"limit": 30}, {"category": "1"}])
def test_a_longer_list_or_a_category_is_computed_live(recs_shop, active_model, model_calls,
                                                      request_kwargs) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    precompute_for_you()
    calls = len(model_calls)
    recs = for_you(Shopper.for_user(recs_shop.alice), **request_kwargs)
    assert len(model_calls) == calls + 1 and recs.source == "model"


def test_a_product_placed_since_the_job_leaves_the_lists_readable(recs_shop, active_model,
                                                                  model_calls) -> None:
    """Placing new products changes the model that serves, not the version the lists are of: the
    new product joins the list at the shopper's next event."""
    recs_shop.view(*TEA[:4], user=recs_shop.alice)
    shopper = Shopper.for_user(recs_shop.alice)
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PLACE_NEW_PRODUCTS": False}):
        precompute_for_you()
    placed_model.invalidate()
    assert str(NEW_TEA) in with_new_products(active_model).recommender.item_ids
    calls = len(model_calls)
    first = for_you(shopper, 3)
    assert len(model_calls) == calls and str(NEW_TEA) not in first.product_ids
    recs_shop.view(TEA[4], user=recs_shop.alice)
    after = for_you(shopper, 3)
    assert len(model_calls) == calls + 1 and str(NEW_TEA) in after.product_ids


def test_another_model_version_does_not_read_the_lists_of_the_one_before(
    recs_shop, active_model, model_calls, trained_artifact
) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    precompute_for_you()
    newer = activate(*trained_artifact)
    calls = len(model_calls)
    recs = for_you(Shopper.for_user(recs_shop.alice), 3)
    assert len(model_calls) == calls + 1
    assert recs.model_version == newer.label != active_model.label


def test_only_signed_in_shoppers_active_within_the_window_are_computed_ahead(
    recs_shop, active_model
) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    recs_shop.view(21, 22, session_key="guest-session")
    recs_shop.view(31, user=recs_shop.bob)
    Event.objects.filter(user=recs_shop.bob).update(
        timestamp=timezone.now() - dt.timedelta(days=31))
    assert precompute_for_you() == 1  # alice: bob was last seen 31 days ago, the guest has none
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRECOMPUTE_ACTIVE_DAYS": 60}):
        assert precompute_for_you() == 2
    with without_precompute():
        assert precompute_for_you() == 0


def test_a_guest_is_computed_in_the_request(recs_shop, active_model, model_calls) -> None:
    recs_shop.view(11, 12, session_key="guest-session")
    precompute_for_you()
    recs = for_you(Shopper(session_key="guest-session"), 3)
    assert recs.source == "model" and model_calls[-1] == 1


def test_without_a_model_nothing_is_computed_ahead(recs_shop) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    assert precompute_for_you() == 0
    assert for_you(Shopper.for_user(recs_shop.alice), 3).source == "popular"


def test_activating_a_version_in_the_admin_computes_the_lists_ahead(
    client, recs_shop, trained_artifact, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    recs_shop.view(*TEA[:2], user=recs_shop.alice)
    version = activate(*trained_artifact)
    ModelVersion.objects.filter(pk=version.pk).update(is_active=False)
    admin = User.objects.create_user("admin", password="pw", is_staff=True)
    admin.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_modelversion", "activate_modelversion"]))
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client.post(reverse("admin:shop_recs_modelversion_changelist"),
                    {"action": "activate_version", "_selected_action": [version.pk]})
    assert len(callbacks) == 1
    calls = count_model_calls(monkeypatch)
    recs = for_you(Shopper.for_user(recs_shop.alice), 3)
    assert recs.source == "model" and recs.model_version == version.label and calls == []
    page = client.get(reverse("admin:shop_recs_modelversion_changelist")).content.decode()
    assert (f"For-you lists computed ahead for {version.label}: 1 shopper, of 1 active in the "
            "last 30 days, finished") in " ".join(page.split())


def test_the_jobs_progress_is_kept_for_the_admin(recs_shop, active_model) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    recs_shop.view(21, user=recs_shop.bob)
    Event.objects.filter(user=recs_shop.bob).update(product_id="no-such-product")
    assert precomputed.last_job() is None
    before = timezone.now()
    assert precompute_for_you(batch_size=1) == 1  # bob's history is unknown to the model
    job = precomputed.last_job()
    assert (job.version, job.days, job.shoppers, job.done, job.stored) == (
        active_model.label, 30, 2, 2, 1)
    assert before <= job.started <= job.finished <= timezone.now()


@pytest.mark.parametrize(("key", "value", "check"), [
    ("PRECOMPUTE_ACTIVE_DAYS", 0, "shop_recs.E015"),
    ("PRECOMPUTE_ACTIVE_DAYS", "30", "shop_recs.E015"),
    ("PRECOMPUTED_SECONDS", None, "shop_recs.E016"),
    ("PRECOMPUTED_SECONDS", 1.5, "shop_recs.E016"),
])
def test_bad_precompute_settings_are_reported(key, value, check) -> None:
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, key: value}):
        ids = {message.id for message in run_checks(tags=["shop_recs"])}
    assert check in ids


def test_with_a_broker_the_job_is_sent_after_the_activation_commits(
    db, monkeypatch, not_eager, django_capture_on_commit_callbacks
) -> None:
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **options: sent.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        schedule_precompute()
        assert sent == []  # not before the commit: the worker must find the new version active
    assert sent == [PRECOMPUTE_TASK]
    with without_precompute(), django_capture_on_commit_callbacks(execute=True) as scheduled:
        schedule_precompute()
    assert scheduled == [] and sent == [PRECOMPUTE_TASK]


def test_an_unreachable_broker_is_logged_not_raised(
    db, monkeypatch, not_eager, caplog, django_capture_on_commit_callbacks
) -> None:
    def unreachable(name, **options):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(current_app, "send_task", unreachable)
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        schedule_precompute()
    assert "for-you lists could not be computed ahead: broker down" in caplog.text
