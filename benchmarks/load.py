"""Event ingestion under load: nothing lost, nothing doubled, no 5xx, while training and serving.

    python -m benchmarks.load [--events 100000] [--clients 50] [--batch 20] [--workers 2]
                              [--products 2000] [--shoppers 1000] [--reuse]

1. builds the demo shop in its own PostgreSQL database (``--database``; ``--reuse`` keeps one of
   the right size) and removes the events of earlier load runs;
2. starts a real Celery worker (Redis broker) and a training run that is still going when the
   load ends (it is cancelled then), so that ingestion competes with training for the CPU;
3. serves the demo with gunicorn on loopback (``benchmarks.serving_settings``: DEBUG off, Redis
   cache, no throttling) and, from ``--clients`` concurrent clients (one shopper and API token
   each), posts at least ``--events`` events to ``POST /recs/api/events/`` in batches of
   ``--batch``; 5% of the events are deliberate re-sends of an earlier event (same idempotency
   key, same body) and 1% are malformed (unknown product, bad timestamp, unknown kind). A request
   that fails on the network is retried with the same body, as a real client would;
4. meanwhile reads the recommendation endpoints (for-you with token auth, similar) at a steady
   ``--read-rate`` (open loop, ``benchmarks._http_load``);
5. counts the rows: every well-formed event must be stored exactly once, no malformed one at all.

Prints a table, appends it to BENCHMARKS.md, and ends with
``RESULT events_sent=<n> events_stored=<n> duplicates_stored=<n> lost=<n> errors_5xx=<n>
events_per_s=<x>``. Target on a 2-core machine: lost = 0, duplicates_stored = 0, errors_5xx = 0,
at least 1,000 events/s accepted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
KEY_PREFIX = "load-"
DUPLICATE_SHARE = 0.05
MALFORMED_SHARE = 0.01
MAX_RETRIES = 5


@dataclass
class ClientTally:
    """What one client sent and heard."""

    sent: int = 0  # events in request bodies, re-sends and malformed ones included
    requests: int = 0
    retries: int = 0
    valid_keys: set[str] = field(default_factory=set)  # well-formed events: must be stored once
    malformed_keys: set[str] = field(default_factory=set)  # must never be stored
    duplicates_sent: int = 0
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> requests
    item_statuses: Counter = field(default_factory=Counter)  # stored / duplicate / invalid ...
    latencies_ms: list[float] = field(default_factory=list)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events to post (at least)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=20, help="events per request")
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--shoppers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--read-rate", type=float, default=20.0,
                        help="recommendation reads per second during the load")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--database", default="shop_recs_bench_load")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-cache", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the demo shop if it already has the right size")
    parser.add_argument("--no-record", action="store_true",
                        help="print the table without appending it to BENCHMARKS.md (smoke runs)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.batch < 1 or args.events < args.clients * args.batch:
        parser.error("--events must cover at least one batch per client")

    started = time.perf_counter()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.serving_settings",
        "DATABASE_URL": f"{args.postgres}/{args.database}",
        "REDIS_CACHE_URL": args.redis_cache,
        "CELERY_BROKER_URL": args.broker,
        "DJANGO_DEBUG": "0",
        "SHOP_RECS_VAR_DIR": str(REPO / "var" / "bench-load"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    os.environ.update(env)
    from benchmarks.serving import _create_database, _start_gunicorn

    _create_database(args.postgres, args.database)

    import django

    django.setup()
    from benchmarks._report import machine_description, markdown_table, publish

    machine = machine_description()
    _build_shop(args)
    _clear_earlier_runs()
    tokens = _tokens(args.clients)
    readers = _reader_tokens(50)
    products = _product_ids()
    worker = _start_worker(env)
    server = None
    try:
        run_id = _start_training(worker)
        server = _start_gunicorn(SimpleNamespace(workers=args.workers, threads=args.threads,
                                                 port=args.port), env)
        _warm_up(args.port, tokens[0], products)
        training_before = _training_state(run_id)
        reads, tallies, seconds = _load(args, tokens, readers, products)
        training_after = _training_state(run_id)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        _stop_training_and_worker(worker)
    counts = _count_rows(tallies)

    sent = sum(t.sent for t in tallies)
    statuses = sum((t.statuses for t in tallies), Counter())
    items = sum((t.item_statuses for t in tallies), Counter())
    latencies = sorted(ms for t in tallies for ms in t.latencies_ms)
    errors_5xx = sum(n for code, n in statuses.items() if isinstance(code, int) and code >= 500)
    errors_5xx += sum(n for name, n in reads.errors.items() if name.startswith("HTTP 5"))
    accepted_per_s = counts["stored"] / seconds
    rows = [
        ["events sent (incl. re-sends and malformed)", sent],
        ["  of which deliberate re-sends", sum(t.duplicates_sent for t in tallies)],
        ["  of which malformed", sum(len(t.malformed_keys) for t in tallies)],
        ["well-formed distinct events", counts["expected"]],
        ["events stored", counts["stored"]],
        ["duplicates stored", counts["duplicates"]],
        ["malformed stored", counts["malformed_stored"]],
        ["lost", counts["lost"]],
        [f"requests (batches of {args.batch})", sum(t.requests for t in tallies)],
        ["network retries", sum(t.retries for t in tallies)],
        ["HTTP statuses", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))],
        ["per-event results", ", ".join(f"{k}: {v}" for k, v in sorted(items.items()))],
        ["5xx answers (events + reads)", errors_5xx],
        ["posting time, s", round(seconds, 1)],
        ["events accepted per s", round(accepted_per_s, 1)],
        ["POST events p50 / p99 ms", f"{_pct(latencies, 50):.1f} / {_pct(latencies, 99):.1f}"],
        ["reads (for-you + similar) done / errors", f"{len(reads.latencies_ms)} / "
                                                    f"{sum(reads.errors.values())}"],
        ["reads p50 / p99 ms", f"{reads.percentile(50):.1f} / {reads.percentile(99):.1f}"],
        ["training run during the load", f"{training_before} -> {training_after}"],
    ]
    title = "Event ingestion under load (PostgreSQL, gunicorn on loopback, training running)"
    if args.no_record:
        print(markdown_table(["measure", "value"], rows))
    else:
        publish(
            title,
            ["measure", "value"], rows, machine=machine, started=started,
            notes=[f"{args.clients} clients (one shopper and API token each) posting batches of "
                   f"{args.batch} events; gunicorn {args.workers} workers x {args.threads} "
                   "threads; a Celery worker (1 torch thread) training throughout on the same "
                   f"machine; recommendation reads at {args.read_rate:.0f}/s (open loop) at the "
                   "same time; the load generator runs on the same 2 cores."],
        )
    print(f"RESULT events_sent={sent} events_stored={counts['stored']} "
          f"duplicates_stored={counts['duplicates']} lost={counts['lost']} "
          f"errors_5xx={errors_5xx} events_per_s={accepted_per_s:.0f}")


# --- Setup -------------------------------------------------------------------------------------


def _build_shop(args: argparse.Namespace) -> None:
    from django.core.management import call_command

    from demo.models import Product

    call_command("migrate", verbosity=0)
    if args.reuse and Product.objects.count() == args.products:
        print(f"Reusing the shop in {args.database}", flush=True)
        return
    print(f"Building the demo shop: {args.products} products, {args.shoppers} shoppers",
          flush=True)
    call_command("demo_shop", products=args.products, shoppers=args.shoppers, reset=True,
                 verbosity=1)
    call_command("recs_import_orders", verbosity=1)


def _clear_earlier_runs() -> None:
    from shop_recs.models import Event, TrainingRun

    deleted, _ = Event.objects.filter(idempotency_key__startswith=KEY_PREFIX).delete()
    if deleted:
        print(f"Removed {deleted} events of an earlier load run", flush=True)
    for run in TrainingRun.objects.filter(open_slot__isnull=False):
        run.finish(TrainingRun.Status.CANCELLED, message="Closed by benchmarks.load")


def _tokens(count: int) -> list[str]:
    """API tokens of ``count`` load-test shoppers (created once)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user_model = get_user_model()
    tokens = []
    for i in range(count):
        user, _ = user_model.objects.get_or_create(username=f"load-client-{i}")
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return tokens


def _reader_tokens(count: int) -> list[str]:
    """Tokens of shoppers with a history, whose for-you lists are read during the load."""
    from rest_framework.authtoken.models import Token

    from shop_recs.models import Event

    users = list(Event.objects.filter(user__isnull=False).exclude(
        user__username__startswith="load-client-").values_list("user_id", flat=True)
        .distinct()[:count])
    return [Token.objects.get_or_create(user_id=pk)[0].key for pk in users]


def _product_ids() -> list[str]:
    from shop_recs.adapter import get_adapter

    return [str(pk) for pk in get_adapter().available_products().values_list("pk", flat=True)]


def _start_worker(env: dict[str, str]) -> subprocess.Popen:
    import redis

    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "recs-training",
         "--pool", "solo", "--concurrency", "1", "-l", "warning", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=REPO, env={**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def _start_training(worker: subprocess.Popen) -> int:
    """Queue a run long enough to outlast the load; return once it has trained an epoch."""
    from shop_recs.jobs import start_training
    from shop_recs.models import TrainingRun

    run, _ = start_training(parameters={"epochs": 100_000, "patience": 100_000, "d_model": 32,
                                        "use_text": False}, trigger="benchmark")
    deadline = time.monotonic() + 600
    while True:
        run.refresh_from_db()
        if run.status == TrainingRun.Status.RUNNING and run.epoch_metrics:
            print(f"Training run #{run.pk} is training (epoch {len(run.epoch_metrics)})",
                  flush=True)
            return run.pk
        if not run.is_open or worker.poll() is not None:
            raise RuntimeError(f"training run #{run.pk} ended before the load: {run.error}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"training run #{run.pk} did not reach an epoch within 600 s")
        time.sleep(0.5)


def _training_state(run_id: int) -> str:
    from shop_recs.models import TrainingRun

    run = TrainingRun.objects.get(pk=run_id)
    return f"{run.status} ({run.phase}, {len(run.epoch_metrics)} epochs)"


def _stop_training_and_worker(worker: subprocess.Popen) -> None:
    from shop_recs.jobs import cancel_training
    from shop_recs.models import TrainingRun

    for run in TrainingRun.objects.filter(open_slot__isnull=False):
        cancel_training(run)
    deadline = time.monotonic() + 60
    while (TrainingRun.objects.filter(open_slot__isnull=False).exists()
           and time.monotonic() < deadline and worker.poll() is None):
        time.sleep(0.5)
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def _warm_up(port: int, token: str, products: list[str]) -> None:
    """Every gunicorn worker opens its connections and loads the catalogue before timing."""
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    for product in products[:20]:
        connection.request("GET", f"/recs/api/products/{product}/similar/")
        connection.getresponse().read()
    connection.close()


# --- The load ----------------------------------------------------------------------------------


def _load(args: argparse.Namespace, tokens: list[str], readers: list[str],
          products: list[str]):
    from benchmarks._http_load import open_loop

    per_client = -(-args.events // args.clients)  # at least --events in all
    tallies = [ClientTally() for _ in tokens]
    rng = random.Random(0)
    reads_requests = (
        [("/recs/api/for-you/?limit=8", {"Authorization": f"Token {t}"}) for t in readers]
        + [(f"/recs/api/products/{p}/similar/?limit=8", {}) for p in rng.sample(
            products, min(500, len(products)))]
    )
    stop_reading = threading.Event()
    reads_box: list = []

    def read_steadily() -> None:
        # In slices, so that reading stops soon after posting does.
        from benchmarks._http_load import LoadResult

        total = LoadResult()
        while not stop_reading.is_set():
            part = open_loop(HOST, args.port, reads_requests, rate=args.read_rate, seconds=2,
                             threads=4, seed=len(total.latencies_ms))
            total.latencies_ms += part.latencies_ms
            for name, n in part.errors.items():
                total.errors[name] = total.errors.get(name, 0) + n
            total.seconds += part.seconds
        reads_box.append(total)

    reader = threading.Thread(target=read_steadily, daemon=True)
    reader.start()
    start = threading.Barrier(len(tokens) + 1)
    clients = [threading.Thread(target=_client, args=(args, i, token, per_client, products,
                                                      tallies[i], start), daemon=True)
               for i, token in enumerate(tokens)]
    for thread in clients:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in clients:
        thread.join()
    seconds = time.perf_counter() - began
    stop_reading.set()
    reader.join()
    return reads_box[0], tallies, seconds


def _client(args: argparse.Namespace, index: int, token: str, count: int, products: list[str],
            tally: ClientTally, start: threading.Barrier) -> None:
    rng = random.Random(1000 + index)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(HOST, args.port, timeout=60)
    sent_valid: list[dict] = []
    now = dt.datetime.now(dt.UTC)
    start.wait()
    serial = 0
    while tally.sent < count:
        batch = []
        for _ in range(min(args.batch, count - tally.sent - len(batch))):
            roll = rng.random()
            if roll < DUPLICATE_SHARE and sent_valid:
                batch.append(rng.choice(sent_valid))  # the very same event again
                tally.duplicates_sent += 1
                continue
            serial += 1
            key = f"{KEY_PREFIX}{index}-{serial}"
            event = {"kind": rng.choice(("view", "view", "view", "add_to_cart")),
                     "product": rng.choice(products), "idempotency_key": key,
                     "timestamp": (now + dt.timedelta(milliseconds=serial)).isoformat()}
            if roll < DUPLICATE_SHARE + MALFORMED_SHARE:
                event.update(rng.choice(({"product": "999999999"},
                                         {"timestamp": "yesterday at noon"},
                                         {"kind": "teleport"})))
                tally.malformed_keys.add(key)
            else:
                tally.valid_keys.add(key)
                sent_valid.append(event)
            batch.append(event)
        tally.sent += len(batch)
        connection = _post(connection, args.port, headers, json.dumps({"events": batch}), tally)
    connection.close()


def _post(connection: http.client.HTTPConnection, port: int, headers: dict[str, str], body: str,
          tally: ClientTally) -> http.client.HTTPConnection:
    """POST one batch, retrying the same body on a network error (idempotent by its keys)."""
    for attempt in range(MAX_RETRIES + 1):
        began = time.perf_counter()
        try:
            connection.request("POST", "/recs/api/events/", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(HOST, port, timeout=60)
            tally.retries += 1
            time.sleep(0.05 * (attempt + 1))
            continue
        tally.latencies_ms.append((time.perf_counter() - began) * 1000)
        tally.requests += 1
        tally.statuses[response.status] += 1
        if response.status < 500:
            for result in json.loads(payload).get("results", []):
                tally.item_statuses[result["status"]] += 1
        return connection
    tally.statuses["network error"] += 1
    return connection


# --- Counting ----------------------------------------------------------------------------------


def _count_rows(tallies: list[ClientTally]) -> dict[str, int]:
    from django.db.models import Count

    from shop_recs.models import Event

    rows = Event.objects.filter(idempotency_key__startswith=KEY_PREFIX)
    per_key = dict(rows.values_list("idempotency_key").annotate(n=Count("id")))
    expected = set().union(*(t.valid_keys for t in tallies))
    malformed = set().union(*(t.malformed_keys for t in tallies))
    return {
        "expected": len(expected),
        "stored": sum(per_key.values()),
        "duplicates": sum(n - 1 for n in per_key.values()),
        "malformed_stored": len(malformed & set(per_key)),
        "lost": len(expected - set(per_key)),
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


if __name__ == "__main__":
    main()
