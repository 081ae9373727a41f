"""Caching on a SHARED cache (Redis, as every web worker of a shop shares it) never hands one
shopper's list to another, whether they sign in with a session or a token, or are guests;
shoppers whose browsing is identical still get their own lists (their purchases differ). Product
lists (bought together; similar products for a product the model does not know, here with new
products left unplaced) are cached once for everyone and personalised after the cache; personal
for-you lists and the model's similar products (from the neighbours it keeps in each process)
are not put in the shared cache on the way; the signed-in shoppers' for-you lists that the job
computes ahead are, each under a key of its shopper and history.

Each shopper's list is first computed with no cache at all; then the same requests, interleaved
over several rounds, go through Redis and must give exactly the same lists.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from shop_recs.services.recommendations import precompute_for_you
from tests.plugin.recs_fixtures import NEW_TEA, RecsShop, reset_recs_caches

pytestmark = [pytest.mark.services]
NO_CACHE = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
LISTS = ["/recs/api/for-you/?limit=6", "/recs/api/products/11/similar/?limit=6",
         f"/recs/api/products/{NEW_TEA}/similar/?limit=6",
         "/recs/api/products/11/bought-together/?limit=6"]


def shoppers(recs_shop: RecsShop) -> dict[str, Client]:
    """alice (session), bob (token), carol (session, alice's browsing plus a purchase), and a
    guest (alice's browsing too)."""
    from django.contrib.auth.models import User

    carol = User.objects.create_user("carol", password="carol-pw")
    for user in (recs_shop.alice, carol):
        recs_shop.view(11, 12, 13, user=user)
    recs_shop.buy(14, 12, user=carol)
    recs_shop.view(21, 22, 23, user=recs_shop.bob)
    alice, carol_client = Client(), Client()
    alice.force_login(recs_shop.alice)
    carol_client.force_login(carol)
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=recs_shop.bob).key}")
    guest = Client()
    guest.post("/recs/api/events/", {"events": [{"kind": "view", "product": p}
                                                for p in ("11", "12", "13")]},
               content_type="application/json")
    return {"alice": alice, "bob": bob, "carol": carol_client, "guest": guest}


def lists_of(client: Client) -> dict[str, list[tuple[str, str]]]:
    answers = {}
    for path in LISTS:
        response = client.get(path)
        assert response.status_code == 200
        answers[path] = [(i["product_id"], i["reason"]) for i in response.json()["items"]]
    return answers


@override_settings(SHOP_RECS={**settings.SHOP_RECS, "PLACE_NEW_PRODUCTS": False})
def test_a_shared_redis_cache_keeps_every_shoppers_list_their_own(redis_url, recs_shop,
                                                                  active_model) -> None:
    clients = shoppers(recs_shop)
    with override_settings(CACHES=NO_CACHE):
        expected = {name: lists_of(client) for name, client in clients.items()}
    # The shoppers do differ, so that a list served to the wrong one would show.
    assert expected["alice"] != expected["bob"]
    assert expected["alice"] != expected["carol"]  # carol's purchases are left out of hers
    prefix = f"privacy-{uuid.uuid4().hex[:8]}"
    shared = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": redis_url, "KEY_PREFIX": prefix}}
    server = redis.Redis.from_url(redis_url)
    try:
        with override_settings(CACHES=shared):
            reset_recs_caches()
            for order in (["alice", "carol", "guest", "bob"], ["bob", "guest", "carol", "alice"],
                          ["carol", "alice", "bob", "guest"]):
                for name in order:
                    assert lists_of(clients[name]) == expected[name], name
        cached = server.keys(f"{prefix}:*")
        # One similar list, the new product's: the model's similar lists stay in each process.
        assert sum(b"shop_recs:similar" in key for key in cached) == 1, "not cached as expected"
        assert any(b"shop_recs:bought_together" in key for key in cached)
        assert not any(b"shop_recs:for_you" in key for key in cached)
        assert not any(recs_shop.alice.username.encode() in key or b"sessionid" in key
                       for key in cached)
        # The job a model activation starts puts the signed-in shoppers' lists in Redis ahead:
        # each still gets exactly their own.
        with override_settings(CACHES=shared):
            assert precompute_for_you() == 3
            for name in ["carol", "bob", "alice", "guest"]:
                assert lists_of(clients[name]) == expected[name], name
        ahead = [key for key in server.keys(f"{prefix}:*") if b"shop_recs:for_you_ahead:" in key]
        assert len(ahead) == 3
    finally:
        for key in server.scan_iter(f"{prefix}:*"):
            server.delete(key)
        server.close()


def test_cache_keys_never_hold_a_session_key(redis_url, recs_shop, active_model) -> None:
    """A guest's session key is a credential: the shared cache must not be a place to find it."""
    guest = Client()
    guest.post("/recs/api/events/", {"events": [{"kind": "view", "product": "11"}]},
               content_type="application/json")
    session_key = guest.session.session_key
    prefix = f"privacy-{uuid.uuid4().hex[:8]}"
    shared = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": redis_url, "KEY_PREFIX": prefix}}
    server = redis.Redis.from_url(redis_url)
    try:
        with override_settings(CACHES=shared):
            reset_recs_caches()
            assert guest.get("/recs/api/for-you/").status_code == 200
        keys = server.keys(f"{prefix}:*")
        assert keys and not any(session_key.encode() in key for key in keys)
        assert not any(session_key.encode() in (server.get(key) or b"") for key in keys)
    finally:
        for key in server.scan_iter(f"{prefix}:*"):
            server.delete(key)
        server.close()
