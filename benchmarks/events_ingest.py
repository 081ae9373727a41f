"""How fast events go into the event table, through the plugin's one way in.

    python -m benchmarks.events_ingest [--events 50000] [--singles 1000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_recs python -m benchmarks.events_ingest

Runs on a throw-away test database (Django's ``test_`` database: SQLite in memory, or
PostgreSQL with DATABASE_URL) holding 2,000 products and 300 users. Workloads:
``bulk_record_events`` with half the events keyed (the demo generator, the import command and
the REST batch endpoint take this path), the same batch sent again (every keyed event is a
duplicate), and ``record_event`` one call at a time with a key (a view tag or a single POST).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="events in the bulk batch")
    parser.add_argument("--singles", type=int, default=1_000, help="record_event calls")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import get_runner

    from benchmarks._report import machine_description, publish

    machine = machine_description()
    started = time.perf_counter()
    runner = get_runner(settings)(verbosity=0)
    runner.setup_test_environment()  # DEBUG off: no query log growing in memory
    databases = runner.setup_databases()
    try:
        rows = _measure(args.events, args.singles)
        vendor = connection.vendor
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()

    publish(
        f"Event ingestion ({vendor})",
        ["workload", "events", "events/s", "p50 ms", "p99 ms"],
        rows,
        machine=machine,
        started=started,
        notes=[
            "Half of the bulk events carry an idempotency key; every single call does. "
            "record_event pays one durable commit per call, bulk_record_events one per batch.",
        ],
    )
    bulk, resend, single = rows
    print(
        f"RESULT database={vendor} bulk_events_per_s={bulk[2]:.0f} "
        f"resend_events_per_s={resend[2]:.0f} single_events_per_s={single[2]:.0f} "
        f"single_p99_ms={single[4]:.2f}"
    )


def _measure(n_events: int, n_singles: int) -> list[list[object]]:
    from decimal import Decimal

    from django.contrib.auth.models import User

    from demo.models import Category, Product
    from shop_recs.events import bulk_record_events, record_event

    category = Category.objects.create(name="Bench", slug="bench")
    Product.objects.bulk_create(
        Product(title=f"Product {i}", category=category, price=Decimal(1)) for i in range(2000)
    )
    User.objects.bulk_create(User(username=f"bench{i}") for i in range(300))
    products = list(Product.objects.values_list("pk", flat=True))
    users = list(User.objects.values_list("pk", flat=True))
    events = [
        {"kind": "view", "product": products[i % len(products)], "user": users[i % len(users)],
         "idempotency_key": f"bulk-{i}" if i % 2 else None}
        for i in range(n_events)
    ]

    began = time.perf_counter()
    first = bulk_record_events(events)
    bulk_s = time.perf_counter() - began
    assert first.stored == n_events, first.errors()

    began = time.perf_counter()
    again = bulk_record_events(events)
    resend_s = time.perf_counter() - began
    assert again.duplicates == n_events // 2, again.errors()

    latencies = []
    for i in range(n_singles):
        began = time.perf_counter()
        record_event(kind="view", product=products[i % len(products)], user=users[i % len(users)],
                     idempotency_key=f"single-{i}")
        latencies.append((time.perf_counter() - began) * 1000)
    quantiles = statistics.quantiles(latencies, n=100)
    return [
        ["bulk_record_events", n_events, n_events / bulk_s, None, None],
        ["bulk_record_events, sent again", n_events, n_events / resend_s, None, None],
        ["record_event, one at a time", n_singles, n_singles / (sum(latencies) / 1000),
         statistics.median(latencies), quantiles[98]],
    ]


if __name__ == "__main__":
    main()
