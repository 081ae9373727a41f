"""``manage.py recs_import_orders [--since DATE]``: purchase events from existing orders.

Safe to run again and again (and next to the live purchase receiver): each order line's event
carries the line's idempotency key, so a line already recorded is counted as "already there".
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from shop_recs.adapter import ShopAdapter, get_adapter
from shop_recs.events import bulk_record_events, purchase_event
from shop_recs.services.copurchase import count_co_purchases

# Lines per bulk insert: large enough to be fast, small enough to show progress often.
BATCH_SIZE = 2000
# How many distinct error messages are listed at the end.
MAX_ERRORS_SHOWN = 10


def parse_since(value: str) -> dt.datetime:
    """A date (midnight, current time zone) or an ISO date-time (naive: current time zone)."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(
                f"--since {value!r} is not a date (2025-01-31) or date-time (2025-01-31T08:00)."
            )
        moment = dt.datetime.combine(day, dt.time.min)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = "Record purchase events for the shop's existing order lines (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", type=parse_since,
            help="Only order lines from this date or date-time on (default: all).",
        )

    def handle(self, *args: Any, since: dt.datetime | None, verbosity: int, **options: Any) -> None:
        adapter = get_adapter()
        reads_order_lines = type(adapter).purchases is ShopAdapter.purchases
        if reads_order_lines and adapter.order_line_model() is None:
            raise CommandError(
                'SHOP_RECS["ORDER_LINE_MODEL"] is not set: name your order-line model, '
                'e.g. "shop.OrderLine", so that purchases can be read.'
            )
        total = adapter.purchase_count(since=since)
        counts: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        batch: list[dict[str, Any]] = []
        with tqdm(
            total=total, unit="line", desc="Importing order lines", disable=verbosity == 0,
            file=self.stderr._out,
        ) as progress:
            for purchase in adapter.purchases(since=since):
                batch.append(purchase_event(purchase))
                if len(batch) >= BATCH_SIZE:
                    self._store(batch, counts, errors, progress)
            self._store(batch, counts, errors, progress)
        if verbosity:
            self.stdout.write(
                f"{counts['stored']} purchase events stored, {counts['duplicate']} already there, "
                f"{counts['conflict']} already there with other values, "
                f"{counts['invalid']} order lines skipped."
            )
            for message, n in errors.most_common(MAX_ERRORS_SHOWN):
                self.stdout.write(f"  skipped {n}x: {message}")
        if counts["stored"]:  # the bought-together lists read these counts
            pairs = count_co_purchases()
            if verbosity:
                self.stdout.write(f"{pairs} co-purchase pairs counted.")

    @staticmethod
    def _store(
        batch: list[dict[str, Any]], counts: Counter[str], errors: Counter[str], progress: tqdm
    ) -> None:
        if not batch:
            return
        # Product ids come from the order lines' own foreign keys: no need to look them up.
        result = bulk_record_events(batch, validate_products=False)
        for item in result.items:
            counts[item.status] += 1
            if item.status == "invalid":
                errors[item.error] += 1
        progress.update(len(batch))
        batch.clear()
