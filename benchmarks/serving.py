"""How fast recommendations are served: REST latency under load, throughput, and tag render time.

    python -m benchmarks.serving [--products 50000] [--shoppers 100000] [--rate 200]
                                 [--seconds 20] [--workers 2] [--threads 1] [--max-requests N]
                                 [--reuse]

1. builds the demo shop (``demo_shop`` + ``recs_import_orders``) in its own PostgreSQL database
   (``--database``, default shop_recs_bench_serving; ``--reuse`` keeps one of the right size);
2. trains a model version over the whole catalogue, of the shape a shop trains (text + ID, the
   text-match channel: the training defaults and the demo's SHOP_RECS["TRAINING"]), but short:
   latency does not depend on how good it is (``--train-users`` shoppers, ``--epochs``), and
   activates it (the first time, encoding the catalogue's texts took about 10 minutes on 2
   cores; the encoder's disk cache keeps them for later runs);
3. serves the demo with gunicorn on loopback (Redis as the shared cache) and measures, after a
   warm-up: p50/p99 of ``GET for-you`` (token auth, random shoppers with a history) at a fixed
   ``--rate`` (open loop: latency counts from when each request was due), each list computed
   in its request; then runs the job a model activation starts, which computes the lists of
   the recently active shoppers ahead (timed, with the Redis memory it takes), and measures
   ``GET for-you`` again as a shop serves it, and ``GET products/<id>/similar``; the maximum
   throughput with wrk (both endpoints mixed; Debian package ``wrk``, said at the start and in
   the table when it is missing), and p50/p99 of the product page with its two tags;
4. times each product-page tag in-process (similar_products, bought_together: candidates,
   rules, one product query, the queued impression and the template), both tags for one
   request per page;
5. checks that the impressions of the timed requests were all stored once the server stopped;
6. times a full garbage collection with and without the freeze, the writing of a batch of
   impressions as a COPY and as a multi-row INSERT, and one rebuild of each value a web process
   refreshes in the background (the catalogue snapshot, the popularity rankings);
7. times a fixed Python job on the idle machine before and after the run: the machine's speed
   at rest, which on a shared VM moves from run to run (contention during a run moves the
   latencies too, and shows only in the CPU time per request).

Prints a table, appends it to BENCHMARKS.md, and ends with
``RESULT foryou_p99_ms=<x> similar_p99_ms=<x> rps=<x> tag_ms=<x> foryou_live_p99_ms=<x>``
(foryou: as served, with the lists computed ahead; foryou_live: each computed in its request).
Target on a 2-core machine: p99 <= 30 ms at 200 requests/s, <= 5 ms per tag.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# The version's gate reason: a version with it is reused (the ID-only versions that earlier
# releases trained have another one).
BENCHMARK_MODEL = "trained by benchmarks.serving in the shop's model shape"
FORYOU = "GET for-you"
FORYOU_LIVE = "GET for-you, every list computed in the request"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s while timing")
    parser.add_argument("--seconds", type=float, default=20.0, help="per endpoint")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker (serving is CPU-bound: threads of one process "
                             "take turns on the GIL, so more add latency, not throughput)")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--max-requests", type=int, default=0,
                        help="restart each gunicorn worker after about this many requests "
                             "(0: never), to check that restarts lose no impression")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="serve with SERVING_GC_FREEZE off (to compare)")
    parser.add_argument("--database", default="shop_recs_bench_serving")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--train-users", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sample-shoppers", type=int, default=10_000,
                        help="shoppers the for-you requests are spread over")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database and model if they already have the right size")
    args = parser.parse_args(argv)
    args.port = args.port or _free_port()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk): the maximum throughput will "
              "not be measured", file=sys.stderr)

    started = time.perf_counter()
    env = {
        **os.environ,
        **shop_environment(f"{args.postgres}/{args.database}", args.redis),
        "SHOP_RECS_SERVING_GC_FREEZE": "0" if args.no_gc_freeze else "1",
    }
    os.environ.update(env)
    _create_database(args.postgres, args.database)

    import django

    django.setup()
    from django.core.cache import cache
    from django.utils import timezone

    from benchmarks._report import machine_description, publish
    from shop_recs.services.copurchase import count_co_purchases

    machine = machine_description()
    speed_before = _reference_ms()
    _build_shop(args)
    version, model_shape = _model(args)
    began = time.perf_counter()
    pairs = count_co_purchases()  # the background job, timed: fresh counts for the pages
    count_seconds = time.perf_counter() - began
    cache.clear()
    tokens = _tokens(args.sample_shoppers)
    products = _product_ids()
    rng = random.Random(0)
    foryou = [("/recs/api/for-you/?limit=8", {"Authorization": f"Token {t}"}) for t in tokens]
    similar = [(f"/recs/api/products/{p}/similar/?limit=8", {}) for p in
               rng.sample(products, min(5000, len(products)))]
    pages = [(f"/products/{p}/", {}) for p in rng.sample(products, min(2000, len(products)))]

    from benchmarks._http_load import closed_loop_wrk, open_loop

    server = _start_gunicorn(args, env)
    try:
        _warm_up(args.port, foryou + similar + pages, workers=args.workers)
        _check_served_by_the_model(args.port, foryou[0])
        results, cpu, windows = {}, {}, {}

        def timed(name: str, requests: list, rate: float, seconds: float) -> None:
            before, began = _cpu_ticks(), timezone.now()
            results[name] = open_loop(HOST, args.port, requests, rate=rate, seconds=seconds)
            windows[name] = (began, timezone.now())
            cpu[name] = _cpu_ms_per_request(before, _cpu_ticks(), len(results[name].latencies_ms))

        timed(FORYOU_LIVE, foryou, args.rate, args.seconds)  # before any list is computed ahead
        ahead = _precompute(tokens)
        timed(FORYOU, foryou, args.rate, args.seconds)
        timed("GET similar", similar, args.rate, args.seconds)
        timed("GET product page (2 tags)", pages, min(args.rate, 50), args.seconds / 2)
        rps = closed_loop_wrk(HOST, args.port, foryou + similar, seconds=int(args.seconds))
    finally:
        server.terminate()  # a graceful stop: each worker writes its queued impressions
        server.wait(timeout=30)
    stored, served = _impressions_accounted(windows, results)
    tags = _time_tags(products)
    collection_ms, frozen_collection_ms = _full_collection_ms()
    impression_write = _impression_write_ms()
    rebuilds = _rebuild_ms()
    speed_after = _reference_ms()

    rows = [
        [name, f"{r.achieved_rate:.0f}", len(r.latencies_ms), sum(r.errors.values()),
         round(r.percentile(50), 2), round(r.percentile(99), 2)]
        for name, r in results.items()
    ]
    tails = "; ".join(
        f"{name} {len(seconds)} of {math.ceil(r.seconds)} s ("
        + ", ".join(f"{count} in s {second}" for second, count in seconds.most_common(3))
        + ("" if len(seconds) <= 3 else ", ...") + ")"
        for name, r in results.items() if (seconds := r.tail_seconds()))
    split = "; ".join(f"{name}: " + ", ".join(f"{group} {ms:.2f}" for group, ms in groups.items())
                      for name, groups in cpu.items())
    rows += [[f"tag {name} (in-process)", "", len(times), 0, round(statistics.median(times), 2),
              round(_percentile(times, 99), 2)] for name, times in tags.items()]
    rows.append(["max throughput, for-you + similar (wrk)",
                 "not measured: no wrk" if rps is None else f"{rps:.0f}", "", "", "", ""])
    publish(
        "Serving (PostgreSQL, gunicorn on loopback)",
        ["workload", "req/s", "requests", "errors", "p50 ms", "p99 ms"],
        rows,
        machine=machine,
        started=started,
        notes=[
            f"{args.products} products, {args.shoppers} shoppers; model {version} "
            f"({model_shape}); gunicorn {args.workers} workers x "
            f"{args.threads} threads, long-lived objects "
            + ("not frozen" if args.no_gc_freeze else "frozen after the model load")
            + " (SERVING_GC_FREEZE)"
            + (f", each restarted after about {args.max_requests} requests"
               if args.max_requests else "") + "; Redis "
            "cache; for-you spread over "
            f"{len(tokens)} shoppers with a history (token auth), similar over random products; "
            f"{ahead}; "
            "every list response also stores its impression event. Latency is measured from "
            "when each request was due (open loop, load generator on the same 2 cores, its "
            "process's objects frozen for the garbage collector while it sends); the "
            "throughput line is wrk with 16 connections. CPU time per request (ms, from "
            f"/proc, by process): {split}. When the slowest 1% of each workload's requests "
            f"were due (a tail of stalls falls in a few seconds, a tail of queueing all over "
            f"the run): {tails}. Impressions stored once the server had stopped: "
            f"{stored} of the {served} lists served while timing (queued in the workers and "
            "written in batches, IMPRESSION_FLUSH_SECONDS). The tag lines render a product page's "
            "two tags for one request each (a guest with a session; the page's lists share one "
            "history read), every page twice: its lists computed (the shared cache cleared "
            "first), then read from the shared cache; RESULT's tag_ms is the computed case. The "
            "best-seller lines render the pages of the 100 most bought products, lists "
            f"computed. Co-purchases were counted before serving (the background job, which writes "
            f"only the pairs whose count changed since the last count): {pairs} pairs in "
            f"{count_seconds:.1f} s. A full garbage collection in this process, which had "
            f"served the tags: {collection_ms:.1f} ms walking every object, "
            f"{frozen_collection_ms:.1f} ms with the long-lived ones frozen. Writing a batch of "
            "100 impressions (a worker's second at 100 lists/s) took its thread, median of 20, "
            + ", ".join(f"{ms:.1f} ms of CPU as {name}" for name, ms in impression_write.items())
            + " (the plugin writes by COPY). One rebuild of what each web process refreshes in "
            "a background thread, median of 5: "
            + ", ".join(f"{name} {ms:.0f} ms" for name, ms in rebuilds.items()) + ". "
            f"The machine's speed at rest (a fixed single-threaded Python job, median of 11): "
            f"{speed_before:.0f} ms before the run, {speed_after:.0f} ms after it (a slower "
            "machine shows here; contention that comes and goes during the run does not).",
        ],
    )
    foryou_p99 = results[FORYOU].percentile(99)
    foryou_live_p99 = results[FORYOU_LIVE].percentile(99)
    similar_p99 = results["GET similar"].percentile(99)
    tag_ms = statistics.median([t for name, times in tags.items() if name.endswith("computed")
                                for t in times])  # the slower case
    print(f"RESULT foryou_p99_ms={foryou_p99:.2f} similar_p99_ms={similar_p99:.2f} "
          f"rps={float('nan') if rps is None else rps:.0f} tag_ms={tag_ms:.2f} "
          f"foryou_live_p99_ms={foryou_live_p99:.2f}")


# --- Setup -------------------------------------------------------------------------------------


def shop_environment(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of the benchmark's shop (its settings, database, cache and model files),
    for the server it starts and for any script that works on the same shop."""
    return {
        "DJANGO_SETTINGS_MODULE": "benchmarks.serving_settings",
        "DATABASE_URL": database_url,
        "REDIS_CACHE_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "SHOP_RECS_VAR_DIR": str(REPO / "var" / "bench-serving"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _create_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                    [name]).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def _build_shop(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection

    from demo.models import Product

    call_command("migrate", verbosity=0)
    if args.reuse and Product.objects.count() == args.products:
        print(f"Reusing the shop in {args.database}", flush=True)
    else:
        print(f"Building the demo shop: {args.products} products, {args.shoppers} shoppers",
              flush=True)
        call_command("demo_shop", products=args.products, shoppers=args.shoppers, reset=True,
                     verbosity=1)
        call_command("recs_import_orders", verbosity=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as a live database has them


def _model(args: argparse.Namespace) -> tuple[str, str]:
    """The active version and its shape, trained now unless --reuse finds one over this
    catalogue."""
    import numpy as np

    from recsys_core.artifacts import ArtifactError
    from recsys_core.pipeline import train_version
    from shop_recs.export import export_training_data
    from shop_recs.models import ModelVersion
    from shop_recs.registry import (
        GateDecision,
        load_recommender,
        store_version,
        text_encoder,
        train_config_for,
    )

    active = ModelVersion.active()
    if args.reuse and active is not None and active.gate_reason == BENCHMARK_MODEL:
        try:
            return active.label, model_shape_of(load_recommender(active).model.config)
        except (ArtifactError, ValueError) as exc:  # made by an older recsys_core
            print(f"Not reusing {active.label}: {exc}", flush=True)
    print("Training the benchmark's model version", flush=True)
    data = export_training_data().data
    rng = np.random.default_rng(0)
    keep = sorted(rng.choice(len(data.users), min(args.train_users, len(data.users)),
                             replace=False))
    subset = replace(
        data, users=[data.users[i] for i in keep], sequences=[data.sequences[i] for i in keep],
        kinds=[data.kinds[i] for i in keep],
        timestamps=None if data.timestamps is None else [data.timestamps[i] for i in keep],
    )
    settings = train_config_for({"epochs": args.epochs, "patience": 1, "batch_size": 256,
                                 "seed": 0, "device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        result = train_version(
            subset, model_config_overrides=settings.model, train_config=settings.train,
            text_encoder=text_encoder(), output_dir=Path(tmp) / "artifact",
            baseline_scores=False, progress=_phase_printer(),
        )
        version = store_version(None, Path(tmp) / "artifact", result.metrics,
                                {"users": len(keep)}, GateDecision(True, BENCHMARK_MODEL))
    version.activate()
    return version.label, model_shape_of(result.recommender.model.config)


def _phase_printer() -> Callable[[Any], None]:
    """Training progress (the model takes minutes to train): a line when the phase or the
    epoch changes, or at each whole per cent."""
    last: list[tuple] = []

    def show(progress: Any) -> None:
        step = (progress.phase, progress.epoch, int(progress.fraction * 100))
        if not last or last[0] != step:
            last[:] = [step]
            epoch = f" epoch {progress.epoch}/{progress.epochs}" if progress.epoch else ""
            print(f"  training: {progress.phase}{epoch} ({progress.fraction:.0%})", flush=True)

    return show


def model_shape_of(config: Any) -> str:
    """What serving a version costs depends on (its ModelConfig): item table, text channels."""
    parts = ["text + ID" if config.use_text and config.use_id else
             "text only" if config.use_text else "ID embeddings"]
    if config.uses_text_match:
        parts.append(f"text match {config.text_match_dim}-d, text prior {config.text_prior:g}")
    return ", ".join([*parts, f"d_model {config.d_model}, {config.n_items} items trained"])


def _tokens(count: int) -> list[str]:
    """API tokens of up to ``count`` shoppers who have a history (created once)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from shop_recs.models import Event

    users = list(Event.objects.filter(user__isnull=False).order_by("user_id")
                 .values_list("user_id", flat=True).distinct()[: count * 3])
    chosen = random.Random(0).sample(users, min(count, len(users)))
    have = set(Token.objects.filter(user_id__in=chosen).values_list("user_id", flat=True))
    user_model = get_user_model()
    Token.objects.bulk_create([Token(user=user_model(pk=pk), key=Token.generate_key())
                               for pk in chosen if pk not in have], batch_size=1000)
    return list(Token.objects.filter(user_id__in=chosen).values_list("key", flat=True))


def _product_ids() -> list[str]:
    from shop_recs.adapter import get_adapter

    return [str(pk) for pk in get_adapter().available_products().values_list("pk", flat=True)]


# --- Serving -----------------------------------------------------------------------------------


def _start_gunicorn(args: argparse.Namespace, env: dict[str, str]) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "demo.wsgi:application", "--workers",
         str(args.workers), "--worker-class", "gthread", "--threads", str(args.threads),
         "--bind", f"{HOST}:{args.port}", "--log-level", "warning",
         *(["--max-requests", str(args.max_requests), "--max-requests-jitter",
            str(max(args.max_requests // 5, 1))] if args.max_requests else [])],
        cwd=REPO, env=env,
    )
    for _ in range(120):
        time.sleep(0.5)
        if server.poll() is not None:  # e.g. the port is taken: never measure another server
            raise RuntimeError("gunicorn exited; see its output above")
        try:
            urllib.request.urlopen(f"http://{HOST}:{args.port}/recs/api/schema/", timeout=2)
            return server
        except OSError:
            pass
    server.terminate()
    raise RuntimeError("gunicorn did not answer within 60 s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _warm_up(port: int, requests: list, *, workers: int) -> None:
    """Every worker loads the model, the catalogue snapshot and the popularity ranking."""
    from benchmarks._http_load import open_loop

    sample = random.Random(1).sample(requests, min(len(requests), 100 * workers))
    open_loop(HOST, port, sample, rate=50, seconds=len(sample) / 50, threads=4)


def _precompute(tokens: list[str]) -> str:
    """Run the job that a model activation starts (in this process, timed): the for-you lists
    of the shoppers active in the last PRECOMPUTE_ACTIVE_DAYS days, computed ahead. Says how
    long it took, what it keeps in Redis, and how many of the timed shoppers it covers."""
    import redis
    from django.conf import settings

    from shop_recs.conf import recs_settings
    from shop_recs.services.recommendations import precompute_for_you

    memory = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    used_before = memory.info("memory")["used_memory"]
    began = time.perf_counter()
    stored = precompute_for_you()
    seconds = time.perf_counter() - began
    used = memory.info("memory")["used_memory"] - used_before
    found, users = count_lists_ahead(tokens)
    return (
        f"the for-you lists of the {stored} shoppers active in the last "
        f"{recs_settings.PRECOMPUTE_ACTIVE_DAYS} days were computed ahead after the first "
        f"for-you run (the job a model activation starts, here in the benchmark's process on "
        f"one thread): {seconds:.0f} s, {used / 2**20:.0f} MB more in Redis; {found} of the "
        f"{users} timed shoppers have one, the rest compute theirs in the request. "
        f"'{FORYOU_LIVE}' ran before, every list computed in its request (a shopper with an "
        "event since the job); the wrk line ran after"
    )


def count_lists_ahead(tokens: list[str]) -> tuple[int, int]:
    """(how many of these shoppers have a for-you list computed ahead for their history, how
    many shoppers)."""
    from rest_framework.authtoken.models import Token

    from shop_recs.services import Shopper, precomputed
    from shop_recs.services.recommendations import active_model
    from shop_recs.services.shopper import load_history

    version = active_model().label
    users = list(Token.objects.filter(key__in=tokens).values_list("user_id", flat=True))
    found = sum(precomputed.read(shopper, load_history(shopper), version, 1) is not None
                for shopper in map(Shopper.for_user, users))
    return found, len(users)


def _check_served_by_the_model(port: int, request: tuple[str, dict[str, str]]) -> None:
    """Measure the model's path, not a fallback's (e.g. a version the server cannot load)."""
    path, headers = request
    with urllib.request.urlopen(urllib.request.Request(f"http://{HOST}:{port}{path}",
                                                       headers=headers), timeout=30) as answer:
        source = json.load(answer)["source"]
    if source != "model":
        raise RuntimeError(f"the server answers from the {source!r} fallback, not the model; "
                           "see its log above")


def _time_tags(products: list[str], pages: int = 300,
               best_sellers: int = 100) -> dict[str, list[float]]:
    """ms per render of each product-page tag: both tags rendered for one request per page, as
    a product page does, by a guest with a session, on random products. Each page is shown
    twice: first with its lists computed (the shared cache is cleared before), then again a
    moment later, its lists read from the shared cache as for any product shown within
    CACHE_SECONDS; only the shopper's rules, the product query and the impression remain.
    Then the pages of the ``best_sellers`` most bought products, lists computed: the products
    with the most co-purchases, and the most visited pages."""
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.cache import cache
    from django.template import Context, Template
    from django.test import RequestFactory

    from demo.models import Product
    from shop_recs.serving import model_holder

    if model_holder.get() is None:
        raise RuntimeError("the active model cannot be loaded in this process")
    session = SessionStore()
    session.save()
    tags = {"similar_products": Template("{% load shop_recs %}{% similar_products product 6 %}"),
            "bought_together": Template("{% load shop_recs %}{% bought_together product 4 %}")}
    chosen = list(Product.objects.in_bulk(random.Random(2).sample(products, pages + 1)).values())
    cache.clear()
    timings: dict[str, list[float]] = {}
    pages_shown = [(product, ("computed", "cached")) for product in chosen]
    pages_shown += [(product, ("computed, best sellers",))
                    for product in _best_sellers(best_sellers) if product not in chosen]
    for page, (product, views) in enumerate(pages_shown):
        for view in views:
            request = RequestFactory().get(product.get_absolute_url())
            request.session, request.user = session, AnonymousUser()
            for name, template in tags.items():
                begin = time.perf_counter()
                html = template.render(Context({"request": request, "product": product}))
                if page:  # the first page warms up the template loader
                    timings.setdefault(f"{name}, {view}", []).append(
                        (time.perf_counter() - begin) * 1000)
                if "data-placement=" not in html:
                    raise RuntimeError(f"{name} rendered no list for product {product.pk}")
    return timings


def _reference_ms(repeats: int = 11) -> float:
    """Wall time of a fixed single-threaded Python job (a dict, a sort, strings, like a web
    request's work; no garbage collection), median of ``repeats``: a shared VM's speed moves
    from run to run, and latency figures mean little without it."""
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            began = time.perf_counter()
            table = {f"product-{i}": i * 7919 % 100_003 for i in range(50_000)}
            ranked = sorted(table.items(), key=lambda pair: pair[1])
            ",".join(key for key, _ in ranked[:10_000])
            times.append((time.perf_counter() - began) * 1000)
    finally:
        gc.enable()
    return statistics.median(times)


def _full_collection_ms() -> tuple[float, float]:
    """How long one full collection takes with nothing frozen, and with everything frozen."""
    gc.unfreeze()
    began = time.perf_counter()
    gc.collect()
    walking = (time.perf_counter() - began) * 1000
    gc.freeze()
    began = time.perf_counter()
    gc.collect()
    return walking, (time.perf_counter() - began) * 1000


def _rebuild_ms(repeats: int = 5) -> dict[str, float]:
    """Median time of one rebuild of the per-process values that the recommendation lists read
    and that a web process now refreshes in the background (``shop_recs.services.refreshed``):
    time that, before, one request waited. (The search index was rebuilt in the background
    already.)"""
    from shop_recs.services import fallbacks, search
    from shop_recs.services.catalog import build_snapshot, catalog

    catalog.get()
    builds = {
        # what a refresh that finds the same products costs, and a full build
        "catalogue check (no change)": catalog._build,
        "catalogue snapshot (full build)": build_snapshot,
        **{value.name: value._build for value in (
            fallbacks.popular_ranking, fallbacks.trending_ranking, search.popular_queries)},
    }
    times: dict[str, list[float]] = {}
    for name, build in builds.items():
        for _ in range(repeats):
            began = time.perf_counter()
            build()
            times.setdefault(name, []).append((time.perf_counter() - began) * 1000)
    return {name: statistics.median(found) for name, found in times.items()}


def _impression_write_ms(rows: int = 100, repeats: int = 20) -> dict[str, float]:
    """Median CPU time of the writing thread for one batch of ``rows`` impressions (a web
    worker's second at 100 lists/s), as the plugin writes it (a COPY) and as one multi-row
    INSERT (Django's bulk_create); each batch is rolled back. The writing thread holds the
    interpreter lock for most of this time, while that worker's requests wait."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from shop_recs.events import validated_event
    from shop_recs.models import Event, EventKind
    from shop_recs.services.impressions import insert_rows

    shopper = get_user_model().objects.order_by("pk").first()
    context = {"placement": "for_you", "model_version": "v1", "source": "model",
               "impression_id": "0123456789abcdef", "channel": "api", "n": 8,
               "products": [str(pid) for pid in range(1000, 1008)]}
    ways = {"COPY": insert_rows, "INSERT": lambda batch: Event.objects.bulk_create(batch)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, write in ways.items():
            batch = [validated_event(kind=EventKind.REC_IMPRESSION, context=context, user=shopper)
                     for _ in range(rows)]
            with transaction.atomic():
                began = time.thread_time()
                write(batch)
                times[name].append((time.thread_time() - began) * 1000)
                transaction.set_rollback(True)
    return {name: statistics.median(found) for name, found in times.items()}


def _best_sellers(count: int) -> list:
    from django.db.models import Count

    from demo.models import Product
    from shop_recs.models import Event, EventKind

    top = (Event.objects.filter(kind=EventKind.PURCHASE).values("product_id")
           .annotate(n=Count("id")).order_by("-n").values_list("product_id", flat=True)[:count])
    found = Product.objects.in_bulk([int(pid) for pid in top])
    return [found[int(pid)] for pid in top if int(pid) in found]


def _impressions_accounted(windows: dict, results: dict) -> tuple[int, int]:
    """(impressions stored, lists served) of the timed requests: every list response stores
    one impression, a product page two. Counted after the server stopped, by the time each
    impression was shown."""
    from shop_recs.models import Event, EventKind

    stored = served = 0
    for name, (began, ended) in windows.items():
        stored += Event.objects.filter(kind=EventKind.REC_IMPRESSION, timestamp__gte=began,
                                       timestamp__lte=ended).count()
        served += len(results[name].latencies_ms) * (2 if "page" in name else 1)
    return stored, served


def _cpu_ticks() -> dict[str, int]:
    """CPU clock ticks used so far by the web workers, PostgreSQL, Redis and this process (the
    load generator): where a request's cost goes on the shared cores ({} without /proc).

    A process that ends leaves /proc with its time: a PostgreSQL backend whose connection
    reached CONN_MAX_AGE, a gunicorn worker restarted by --max-requests. Its parent (the
    postmaster, gunicorn's master, both counted in their group) then holds that time among its
    reaped children's, which is counted too, so that a group's count never goes back."""
    ticks: dict[str, int] = {}
    if not os.path.isdir("/proc"):
        return ticks
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                arguments = cmdline.read().decode(errors="replace").split("\0")
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        group = _process_group(int(pid), arguments)
        if group is None:
            continue
        utime, stime, children_utime, children_stime = (int(f) for f in fields[11:15])
        # This process's own children (the server it started) are not the load generator.
        children = 0 if group == "load generator" else children_utime + children_stime
        ticks[group] = ticks.get(group, 0) + utime + stime + children
    return ticks


def _process_group(pid: int, arguments: list[str]) -> str | None:
    """Which part of the benchmark a process is, by its command line (None: not ours)."""
    command = " ".join(arguments)
    if pid == os.getpid():
        return "load generator"
    if "gunicorn" in command:
        return "web"
    # Backends rename themselves ("postgres: user db ..."); the postmaster is its binary's path.
    if command.startswith("postgres") or os.path.basename(arguments[0]) == "postgres":
        return "PostgreSQL"
    if "redis-server" in command:
        return "Redis"
    return None


def _cpu_ms_per_request(before: dict[str, int], after: dict[str, int],
                        requests: int) -> dict[str, float]:
    per_tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    return {group: (ticks - before.get(group, 0)) * per_tick_ms / max(requests, 1)
            for group, ticks in after.items()}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


if __name__ == "__main__":
    main()
