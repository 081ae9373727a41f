"""Redis down: the shop keeps selling, and the admin says what is wrong.

Redis plays two parts: Django's cache (lists, throttling) and Celery's broker (training). With the
cache unreachable every shop page and recommendation endpoint still answers with its lists
(computed instead of cached, the outage logged); with the broker unreachable "Retrain now" and
``recs_train`` say the queue is unreachable, in words, and leave no run open.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from shop_recs.models import Event, EventKind, TrainingRun
from tests.conftest import celery_broker

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
CACHE_DOWN = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": DEAD_REDIS}}


def broker_down():
    return celery_broker(DEAD_REDIS, broker_connection_timeout=0.5)


# (page, what shows that its lists were rendered, whether it reads the cache: a signed-in
# shopper's for-you list looks for one computed ahead; search is made fresh, and the purchases of
# a shopper whose whole history fits the window come with it)
SHOP_PAGES = [
    ("/", ["Recommended for you", "shop-recs__item"], True),
    ("/products/12/", ["Similar products", "shop-recs__item"], True),
    ("/search/?q=green+tea", ["Sencha Green Tea", "/recs/click/"], False),
]
API_LISTS = ["/recs/api/for-you/", "/recs/api/products/12/similar/",
             "/recs/api/products/12/bought-together/", "/recs/api/search/?q=tea",
             "/recs/api/search/suggest/?q=te", "/recs/api/ads/?placement=home"]


@pytest.fixture
def shopper(recs_shop, active_model) -> Client:
    recs_shop.view(11, 12, 13, user=recs_shop.alice)
    client = Client()
    client.force_login(recs_shop.alice)
    return client


@pytest.mark.parametrize(("path", "expected", "reads_cache"), SHOP_PAGES)
def test_shop_pages_render_their_lists_with_the_cache_down(shopper, path, expected, reads_cache,
                                                           caplog) -> None:
    with override_settings(CACHES=CACHE_DOWN), caplog.at_level(logging.WARNING):
        response = shopper.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert all(text in html for text in expected), [t for t in expected if t not in html]
    assert ("cache unavailable" in caplog.text) == reads_cache


@pytest.mark.parametrize("path", API_LISTS)
def test_recommendation_endpoints_answer_with_the_cache_down(shopper, path) -> None:
    with override_settings(CACHES=CACHE_DOWN):
        response = shopper.get(path)
    assert response.status_code == 200, response.content[:300]


def test_events_are_still_recorded_with_the_cache_and_the_broker_down(shopper) -> None:
    with override_settings(CACHES=CACHE_DOWN), broker_down():
        response = shopper.post("/recs/api/events/",
                                {"events": [{"kind": "view", "product": "21"}]},
                                content_type="application/json")
        page = shopper.get("/products/22/")  # the view tag records a view
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert page.status_code == 200
    assert Event.objects.filter(kind=EventKind.VIEW, product_id="22").exists()


def test_retrain_now_says_the_queue_is_unreachable(recs_shop) -> None:
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="x"))
    with broker_down():
        response = admin.post(reverse("admin:shop_recs_trainingrun_retrain"), follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "The training queue (Celery broker) is unreachable" in html
    assert "CELERY_BROKER_URL" in html and "Traceback" not in html
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED and not run.is_open
    assert "unreachable" in run.error


def test_recs_train_says_the_queue_is_unreachable(recs_shop) -> None:
    with broker_down(), pytest.raises(CommandError, match="queue .* is unreachable"):
        call_command("recs_train")
    assert not TrainingRun.objects.filter(open_slot__isnull=False).exists()
