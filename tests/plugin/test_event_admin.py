"""The event admin lists events and lets nobody add, edit or delete one by hand."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from shop_recs.events import record_event


def test_staff_see_the_events_but_cannot_change_them(shop) -> None:
    event = record_event(kind="search", query="matcha", session_key="abcdef123456")
    admin = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)

    listing = client.get("/admin/shop_recs/event/")
    assert listing.status_code == 200
    assert b"matcha" in listing.content and b"abcdef12" in listing.content
    assert client.get("/admin/shop_recs/event/add/").status_code == 403
    detail = client.get(f"/admin/shop_recs/event/{event.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client.get(f"/admin/shop_recs/event/{event.pk}/delete/").status_code == 403
