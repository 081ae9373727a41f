"""CPU time of one personalised ad list at the serving benchmark's size, by part.

    python -m benchmarks.ads_cpu [--lists 300] [--database shop_recs_bench_serving]

Runs on the database and model that ``python -m benchmarks.serving`` built (run that first:
50,000 products). Adds six sponsored-product campaigns and four category campaigns inside a
transaction that is rolled back at the end, then asks ``recommended_ads`` for the home page of
shoppers with a history (the model ranks the ads for them) and adds up the CPU time of this
thread spent in each part. What the template tag and the ads API add on top (rendering, the
impression) is the same as for a recommendation list.

Prints a table, appends it to BENCHMARKS.md, and ends with ``RESULT ad_ms=<x>``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter
from collections.abc import Iterator

from benchmarks._in_process import (
    add_database_arguments,
    model_description,
    open_serving_database,
    rolled_back,
    shoppers_with_history,
    split_rows,
    timing,
)

CAMPAIGN_PRODUCTS = 6
CAMPAIGN_CATEGORIES = 4


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=300, help="timed ad lists")
    add_database_arguments(parser)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = open_serving_database(args)
    from benchmarks._report import machine_description, publish
    from shop_recs.services.ads import recommended_ads

    machine = machine_description()
    shoppers = shoppers_with_history(args.lists)
    spent: Counter[str] = Counter()
    with rolled_back():
        _add_campaigns()
        for shopper in shoppers[:30]:  # warm-up: the catalogue snapshot, the model
            recommended_ads(shopper, "home")
        sources: Counter[str] = Counter()
        with _timed_parts(spent):
            began = time.thread_time_ns()
            for number in range(args.lists):
                ads = recommended_ads(shoppers[number % len(shoppers)], "home")
                sources[ads.source] += 1
            total = time.thread_time_ns() - began

    rows, total_ms = split_rows(spent, total, args.lists,
                                "the rest (eligibility, ranking, tokens)", "whole ad list")
    ranked_by = ", ".join(f"{source} {count}" for source, count in sources.most_common())
    publish(
        "CPU time of one personalised ad list, by part (in-process)",
        ["part", "ms per list", "share"],
        rows,
        machine=machine,
        started=started,
        notes=[
            f"{args.lists} ad lists (home placement) on the serving benchmark's database "
            f"({args.database}), model {model_description(model)}; {CAMPAIGN_PRODUCTS} sponsored "
            f"products and {CAMPAIGN_CATEGORIES} category campaigns, no frequency caps (rolled "
            "back afterwards); "
            f"{len(shoppers)} shoppers with a history; lists ranked by: {ranked_by}. "
            "CPU time of this thread (time.thread_time), summed per part over the lists."
        ],
    )
    print(f"RESULT ad_ms={total_ms:.2f}")


def _add_campaigns() -> None:
    from shop_recs.models import AdCampaign
    from shop_recs.services.catalog import catalog

    snapshot = catalog.get()
    for product_id in sorted(snapshot.available)[:CAMPAIGN_PRODUCTS]:
        AdCampaign.objects.create(name=f"Sponsored {product_id}", product_id=product_id,
                                  bid="0.50", daily_budget="1000")
    for category in sorted(snapshot.members)[:CAMPAIGN_CATEGORIES]:
        AdCampaign.objects.create(name=f"Category {category}", kind=AdCampaign.Kind.CREATIVE,
                                  title="Offer", target_url="/", target_categories=[category],
                                  bid="0.30", daily_budget="1000")


@contextlib.contextmanager
def _timed_parts(spent: Counter[str]) -> Iterator[None]:
    """Wrap the functions that do each part (none calls another: the parts do not overlap)."""
    import shop_recs.services.ads as ads

    parts = [
        ("live_campaigns", "campaigns query"),
        ("_under_caps", "frequency caps query"),
        ("load_history", "history read (with the purchases)"),
        ("relevance", "relevance (the model's lifts)"),
        ("fetch_products", "product instances"),
    ]
    originals = {name: getattr(ads, name) for name, _ in parts}
    for name, label in parts:
        setattr(ads, name, timing(originals[name], label, spent))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(ads, name, original)


if __name__ == "__main__":
    main()
