"""CPU time of a for-you and a similar list as products the model knows become unavailable.

    python -m benchmarks.unavailable_cpu [--lists 300] [--database shop_recs_bench_serving]

Runs on the database and model that ``python -m benchmarks.serving`` built (run that first:
50,000 products). A shop's model knows the products of its training data; some sell out or are
retired before the next training, and none of them may be shown. This times the service calls
(no HTTP, no DRF) for shoppers with a history, first on the catalogue as built, then with every
third product made inactive inside a transaction that is rolled back at the end.

Prints a table, appends it to BENCHMARKS.md, and ends with
``RESULT foryou_ms=<x> similar_ms=<x>`` for the catalogue with a third unavailable.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from benchmarks._in_process import (
    add_database_arguments,
    model_description,
    open_serving_database,
    rolled_back,
    shoppers_with_history,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=300, help="timed lists of each kind")
    add_database_arguments(parser)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = open_serving_database(args)
    from benchmarks._report import machine_description, publish
    from benchmarks.serving import _product_ids
    from demo.models import Product
    from shop_recs.services.catalog import catalog
    from shop_recs.services.recommendations import for_you, similar
    from shop_recs.services.shopper import Shopper

    machine = machine_description()
    shoppers = shoppers_with_history(args.lists)
    known = set(model.recommender.item_ids)
    products = [pid for pid in _product_ids() if pid in known]
    rows = []
    with rolled_back():
        for label in ("as built", "every third product inactive"):
            if label != "as built":
                Product.objects.filter(pk__in=products[::3]).update(active=False)
            catalog.invalidate()
            snapshot = catalog.get()
            unavailable = len(known - snapshot.available)
            asked = [pid for pid in products if pid in snapshot.available][: args.lists]
            foryou_ms, sources = _cpu_ms(lambda s: for_you(s, 8), shoppers)
            similar_ms, _ = _cpu_ms(lambda pid: similar(pid, Shopper(), 6), asked)
            rows.append([label, f"{unavailable}", f"{foryou_ms:.2f}", f"{similar_ms:.2f}",
                         ", ".join(sorted(sources))])
    catalog.invalidate()

    publish(
        "CPU time of a list as products the model knows become unavailable (in-process)",
        ["catalogue", "model's products unavailable", "for-you ms", "similar ms",
         "for-you from"],
        rows,
        machine=machine,
        started=started,
        notes=[
            f"{args.lists} for-you lists (limit 8, shoppers with a history) and {args.lists} "
            f"similar lists (limit 6, products the model knows) per line, on the serving "
            f"benchmark's database ({args.database}), model {model_description(model)}; service "
            "calls in this process (no HTTP, no DRF), after 30 of each to warm up; CPU time of "
            "this thread (time.thread_time) per list. The inactive products were restored "
            "afterwards."
        ],
    )
    print(f"RESULT foryou_ms={rows[-1][2]} similar_ms={rows[-1][3]}")


def _cpu_ms(make_list: Callable[[Any], Any], arguments: list[Any]) -> tuple[float, set[str]]:
    """Thread CPU ms per call of ``make_list`` over ``arguments`` (after 30 warm-up calls), and
    the sources the lists came from."""
    for argument in arguments[:30]:
        make_list(argument)
    sources: set[str] = set()
    began = time.thread_time_ns()
    for argument in arguments:
        sources.add(make_list(argument).source)
    return (time.thread_time_ns() - began) / len(arguments) / 1e6, sources


if __name__ == "__main__":
    main()
