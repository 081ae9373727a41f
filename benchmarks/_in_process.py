"""Shared by the benchmarks that time one kind of request in this process, part by part, on
the database and model that ``python -m benchmarks.serving`` built."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.serving import model_shape_of, shop_environment


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", default="shop_recs_bench_serving")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")


def open_serving_database(args: argparse.Namespace) -> Any:
    """Set Django up on the serving benchmark's database; its active model (exits without one)."""
    os.environ.update(shop_environment(f"{args.postgres}/{args.database}", args.redis))
    import django

    django.setup()
    from shop_recs.services.recommendations import active_model

    model = active_model()
    if model is None:
        sys.exit("No active model in this database: run `python -m benchmarks.serving` first.")
    return model


def model_description(model: Any) -> str:
    """The served version's label and shape, for a benchmark's notes."""
    return f"{model.label} ({model_shape_of(model.recommender.model.config)})"


def timing(function: Callable[..., Any], label: str, spent: Counter[str]) -> Callable[..., Any]:
    """`function`, adding the thread CPU time of each call to ``spent[label]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.thread_time_ns() - began

    return timed


def split_rows(spent: Counter[str], total_ns: int, count: int, rest: str,
               whole: str) -> tuple[list[list[str]], float]:
    """Table rows (part, ms each, share; largest first, the untimed remainder as `rest`, the
    `whole` last) for `count` repetitions, and the whole in ms each."""
    each = {part: ns / count / 1e6 for part, ns in spent.items()}
    each[rest] = (total_ns - sum(spent.values())) / count / 1e6
    total_ms = total_ns / count / 1e6
    rows = [[part, f"{ms:.3f}", f"{ms / total_ms:.0%}"]
            for part, ms in sorted(each.items(), key=lambda kv: -kv[1])]
    rows.append([whole, f"{total_ms:.3f}", "100%"])
    return rows, total_ms


@contextlib.contextmanager
def rolled_back() -> Iterator[None]:
    """A transaction undone at its end: what a benchmark adds or changes in the shop."""
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def shoppers_with_history(count: int) -> list[Any]:
    """Up to ``count`` signed-in shoppers who have events (the model answers for them)."""
    from shop_recs.models import Event
    from shop_recs.services.shopper import Shopper

    users = (Event.objects.filter(user__isnull=False).order_by("user_id")
             .values_list("user_id", flat=True).distinct()[:count])
    return [Shopper(user_id=pk) for pk in users]
