"""``manage.py recs_co_purchases``: count which products shoppers buy together (for cron)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from shop_recs.services.copurchase import count_co_purchases


class Command(BaseCommand):
    help = ("Count the products bought together from the purchase events and store the counts "
            "that changed (the bought-together lists read them).")

    def handle(self, *args: Any, verbosity: int, **options: Any) -> None:
        began = time.monotonic()
        if verbosity:
            self.stdout.write("Counting co-purchases from the purchase events...")
            self.stdout.flush()
        stored = count_co_purchases()
        if verbosity:
            self.stdout.write(f"{stored} co-purchase pairs stored in "
                              f"{time.monotonic() - began:.1f} s.")
