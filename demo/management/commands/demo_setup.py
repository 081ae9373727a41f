"""``manage.py demo_setup``: everything `make demo` needs before the server starts, idempotently.

Generates the synthetic shop if the catalogue is empty, imports its orders as purchase events,
and trains the first model version if none is active (waiting for it, with a progress bar), so
that the first page a newcomer opens is already driven by a trained model.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from demo.models import Category, Product
from shop_recs.models import AdCampaign, ModelVersion

# Sponsored products for the demo's ad slots: one campaign in each of these categories.
AD_CATEGORIES = ["cameras", "coffee-gear", "running-shoes", "tents",
                 "headphones", "skincare", "board-games", "yoga"]


class Command(BaseCommand):
    help = "Set up the demo shop: synthetic data, purchase events and a trained model (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not Product.objects.exists():
            self.stdout.write("Generating the demo shop ...")
            call_command("demo_shop", stdout=self.stdout)
            call_command("recs_import_orders", stdout=self.stdout)
        else:
            self.stdout.write(f"The demo shop has {Product.objects.count()} products already.")
        if not AdCampaign.objects.exists():
            self._create_ad_campaigns()
        if ModelVersion.active() is None:
            self.stdout.write("Training the first model (a minute or two on a laptop CPU) ...")
            call_command("recs_train", wait=True, stdout=self.stdout)
        active = ModelVersion.active()
        self.stdout.write(self.style.SUCCESS(
            f"Ready: model {active.label if active else '(none: fallbacks serve)'} is active. "
            "Open http://127.0.0.1:8000/ — shoppers: shopper1..shopperN / 'shopper'; "
            "admin: admin / admin at /admin/ (Retrain now: /admin/shop_recs/trainingrun/)."
        ))

    def _create_ad_campaigns(self) -> None:
        """A few sponsored products so that the ad slots have something to rank."""
        created = 0
        for i, category in enumerate(Category.objects.filter(slug__in=AD_CATEGORIES)):
            product = category.products.filter(active=True).order_by("-price").first()
            if product is None:
                continue
            AdCampaign.objects.create(
                name=f"Demo: {product.title}", kind=AdCampaign.Kind.PRODUCT,
                product_id=str(product.pk), text=f"Featured in {category.name}",
                bid=Decimal("0.40") + Decimal("0.10") * (i % 4), daily_budget=Decimal("25.00"),
                # Half target their category's shoppers and pages, half run everywhere.
                frequency_cap=5, target_categories=[str(category.pk)] if i % 2 else [],
            )
            created += 1
        self.stdout.write(f"Created {created} demo ad campaigns (sponsored products).")
