"""``manage.py demo_setup``: everything `make demo` needs before the server starts, idempotently.

Generates the synthetic shop if the catalogue is empty, imports its orders as purchase events,
and trains the first model version if none is active (waiting for it, with a progress bar), so
that the first page a newcomer opens is already driven by a trained model.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from demo.models import Product
from shop_recs.models import ModelVersion


class Command(BaseCommand):
    help = "Set up the demo shop: synthetic data, purchase events and a trained model (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not Product.objects.exists():
            self.stdout.write("Generating the demo shop ...")
            call_command("demo_shop", stdout=self.stdout)
            call_command("recs_import_orders", stdout=self.stdout)
        else:
            self.stdout.write(f"The demo shop has {Product.objects.count()} products already.")
        if ModelVersion.active() is None:
            self.stdout.write("Training the first model (a minute or two on a laptop CPU) ...")
            call_command("recs_train", wait=True, stdout=self.stdout)
        active = ModelVersion.active()
        self.stdout.write(self.style.SUCCESS(
            f"Ready: model {active.label if active else '(none: fallbacks serve)'} is active. "
            "Open http://127.0.0.1:8000/ — shoppers: shopper1..shopperN / 'shopper'; "
            "admin: admin / admin at /admin/ (Retrain now: /admin/shop_recs/trainingrun/)."
        ))

