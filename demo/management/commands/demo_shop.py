"""``manage.py demo_shop``: fill the demo shop with a synthetic catalogue and shoppers.

The shop itself is made by ``demo.generator`` (pure, seeded); this command only writes it:
categories, products, shopper accounts and orders with bulk inserts, and product views as
events through the plugin's ``bulk_record_events``, the way any shop would send them. Orders
are plain demo orders: ``manage.py recs_import_orders`` turns them into purchase events.

Accounts (demo only): shopper1..shopperN with password "shopper", superuser admin / admin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from demo.generator import Shopper, SyntheticShop, generate_shop
from demo.models import Category, Order, OrderLine, Product
from shop_recs.events import bulk_record_events
from shop_recs.models import Event, EventKind

SHOPPER_PASSWORD = "shopper"
SHOPPER_USERNAMES = r"^shopper[0-9]+$"
ADMIN_USERNAME = ADMIN_PASSWORD = "admin"
EVENT_CHUNK = 5000


class Command(BaseCommand):
    help = (
        "Generate a realistic synthetic shop: products in 25 categories and shoppers "
        "(shopper1..N, password 'shopper') whose views and orders follow hidden tastes. "
        "Also creates the superuser admin / admin. Demo only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=2000, help="default: 2000")
        parser.add_argument("--shoppers", type=int, default=300, help="default: 300")
        parser.add_argument("--seed", type=int, default=42, help="same seed, same shop")
        parser.add_argument("--days", type=int, default=90,
                            help="spread the history over this many past days (default: 90)")
        parser.add_argument(
            "--reset", action="store_true",
            help="first delete the demo catalogue, orders, shopper accounts and ALL recorded "
                 "events (they would point at the old products)",
        )

    def handle(self, *args: Any, products: int, shoppers: int, seed: int, days: int,
               reset: bool, **options: Any) -> None:
        started = time.monotonic()
        now = timezone.now()
        with transaction.atomic():
            if reset:
                self._reset()
            else:
                self._refuse_to_mix()
            try:
                shop = generate_shop(products=products, shoppers=shoppers, seed=seed, days=days,
                                     now=now)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self._say(f"Generated {len(shop.products)} products in {len(shop.categories)} "
                      f"categories and {len(shop.shoppers)} shoppers (seed {seed}, last {days} "
                      "days)")
            self._write(shop, now)
        self._ensure_admin()
        self._say(self.style.SUCCESS(
            f"Done in {time.monotonic() - started:.1f} s: {len(shop.products)} products, "
            f"{len(shop.shoppers)} shoppers, {shop.order_count} orders "
            f"({shop.order_line_count} lines), {shop.view_count} view events."
        ))
        self._say(
            f'Log in as shopper1..shopper{len(shop.shoppers)} (password "{SHOPPER_PASSWORD}") '
            f'or as "{ADMIN_USERNAME}" / "{ADMIN_PASSWORD}" (demo only).\n'
            "Next: python manage.py recs_import_orders  (orders -> purchase events)"
        )

    # --- Steps ----------------------------------------------------------------------------

    def _reset(self) -> None:
        events, _ = Event.objects.all().delete()
        OrderLine.objects.all().delete()
        Order.objects.all().delete()
        Product.objects.all().delete()
        Category.objects.all().delete()
        users, _ = get_user_model().objects.filter(username__regex=SHOPPER_USERNAMES).delete()
        self._say(f"Reset: deleted the catalogue, orders, shopper accounts and {events} events")

    def _refuse_to_mix(self) -> None:
        """Adding a second synthetic shop on top of a first one would blur both tastes."""
        if Product.objects.exists() or Category.objects.exists():
            raise CommandError(
                f"The shop already has {Product.objects.count()} products; "
                "run with --reset to replace them (this deletes the demo data)."
            )
        taken = get_user_model().objects.filter(username__regex=SHOPPER_USERNAMES).count()
        if taken:
            raise CommandError(f"{taken} shopper accounts already exist; run with --reset.")

    def _write(self, shop: SyntheticShop, now: datetime) -> None:
        categories = Category.objects.bulk_create(
            [Category(name=c.name, slug=c.slug) for c in shop.categories]
        )
        category_of = {c.slug: c for c in categories}
        products = Product.objects.bulk_create(
            [
                Product(title=p.title, description=p.description, brand=p.brand,
                        category=category_of[p.category_slug], price=p.price, stock=p.stock,
                        active=p.active)
                for p in shop.products
            ],
            batch_size=500,
        )
        self._say(f"  catalogue: {len(categories)} categories, {len(products)} products")

        # One hash for every shopper: hashing the same password 300 times would take minutes.
        password = make_password(SHOPPER_PASSWORD)
        users = get_user_model().objects.bulk_create(
            [
                get_user_model()(username=s.username, email=f"{s.username}@example.com",
                                 password=password, date_joined=_first_seen(s, now))
                for s in shop.shoppers
            ],
            batch_size=500,
        )
        self._say(f'  shoppers: {len(users)} accounts (password "{SHOPPER_PASSWORD}")')

        purchases = [(user, order) for user, s in zip(users, shop.shoppers, strict=True)
                     for order in s.orders]
        orders = Order.objects.bulk_create(
            [Order(user=user, created_at=order.timestamp) for user, order in purchases],
            batch_size=500,
        )
        lines = OrderLine.objects.bulk_create(
            [
                OrderLine(order=row, product=products[index], quantity=quantity)
                for row, (_, order) in zip(orders, purchases, strict=True)
                for index, quantity in order.lines
            ],
            batch_size=500,
        )
        self._say(f"  orders: {len(orders)} orders with {len(lines)} lines")

        views = [
            {"kind": EventKind.VIEW, "user": user.pk, "product": products[view.product].pk,
             "timestamp": view.timestamp}
            for user, s in zip(users, shop.shoppers, strict=True)
            for view in s.views
        ]
        self._record(views, progress=lambda done: self._say(
            f"  views: {done}/{len(views)} recorded as events"))

    def _record(self, events: list[dict[str, Any]], progress: Callable[[int], None]) -> None:
        for start in range(0, len(events), EVENT_CHUNK):
            chunk = events[start : start + EVENT_CHUNK]
            # The product ids come from the rows just inserted: no need to look them up again.
            result = bulk_record_events(chunk, validate_products=False)
            if result.stored != len(chunk):
                first = next(iter(result.errors().items()), (None, "unknown reason"))
                raise CommandError(
                    f"{len(chunk) - result.stored} view events were not stored; "
                    f"first problem (event {start + (first[0] or 0)}): {first[1]}"
                )
            progress(start + len(chunk))

    def _ensure_admin(self) -> None:
        users = get_user_model().objects
        if users.filter(username=ADMIN_USERNAME).exists():
            self._say(f'  admin: "{ADMIN_USERNAME}" already exists (left unchanged)')
            return
        users.create_superuser(ADMIN_USERNAME, f"{ADMIN_USERNAME}@example.com", ADMIN_PASSWORD)
        self._say(f'  admin: superuser "{ADMIN_USERNAME}" / "{ADMIN_PASSWORD}" (demo only)')

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()


def _first_seen(shopper: Shopper, now: datetime) -> datetime:
    """An account is opened a little before its first visit, not at generation time."""
    first = min((v.timestamp for v in shopper.views), default=now)
    return first - timedelta(days=1)
