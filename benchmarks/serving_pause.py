"""Whether the first requests after a quiet spell stall: for-you latency just after a pause.

    python -m benchmarks.serving_pause [--pause 90] [--pauses 3] [--repeats 1] [--rate 100]
                                       [--seconds 5]

Runs on the shop that ``python -m benchmarks.serving`` built (its database and model; run that
first), with the for-you lists computed ahead as a shop serves them (the job a model activation
starts is run first when fewer than half of the shoppers have one). Serves it with gunicorn on
loopback as that benchmark does, warms it up, then ``--pauses`` times: sends nothing for
``--pause`` seconds, longer than the catalogue refresh interval (CATALOG_REFRESH_SECONDS, 60),
and then GET for-you at ``--rate`` for ``--seconds`` (open loop, latency from when each request
was due). Once with KEEP_FRESH_SECONDS as the plugin sets it (the values a web process refreshes
are rebuilt on time while it idles) and once at 0 (the first request to find one too old starts
its rebuild, as before that setting), in turns, ``--repeats`` times each.

A stall at the restart shows in the first second: its slowest request, and how many of the
run's slowest 1% fell in it (all of them for a stall; a queue spreads them over the run).

Prints a table, appends it to BENCHMARKS.md, and ends with
``RESULT first_second_max_ms=<x> first_second_max_ms_without=<x>`` (medians over the pauses).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from benchmarks.serving import (
    HOST,
    _check_served_by_the_model,
    _free_port,
    _precompute,
    _reference_ms,
    _start_gunicorn,
    _tokens,
    _warm_up,
    count_lists_ahead,
    shop_environment,
)

WITHOUT = "KEEP_FRESH_SECONDS 0"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", type=float, default=90.0, help="seconds with no request")
    parser.add_argument("--pauses", type=int, default=3, help="pauses per server")
    parser.add_argument("--repeats", type=int, default=1, help="servers per setting, in turns")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s after a pause")
    parser.add_argument("--seconds", type=float, default=5.0, help="of requests after a pause")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", default="shop_recs_bench_serving")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    env = {**os.environ, **shop_environment(f"{args.postgres}/{args.database}", args.redis),
           "SHOP_RECS_SERVING_GC_FREEZE": "1"}
    os.environ.update(env)
    import django

    django.setup()
    from benchmarks._report import machine_description, publish
    from shop_recs.conf import recs_settings
    from shop_recs.services.recommendations import active_model

    if active_model() is None:
        raise SystemExit("No active model in this database: run `python -m benchmarks.serving` "
                         "first.")
    machine = machine_description()
    speed_before = _reference_ms()
    tokens = _tokens(10_000)
    foryou = [("/recs/api/for-you/?limit=8", {"Authorization": f"Token {t}"}) for t in tokens]
    ahead, users = count_lists_ahead(tokens)
    if ahead < users / 2:  # the serving benchmark's tag timing clears the shared cache
        print("Computing the for-you lists ahead (the job a model activation starts; minutes)",
              flush=True)
        _precompute(tokens)
        ahead, users = count_lists_ahead(tokens)
    keep_fresh = f"KEEP_FRESH_SECONDS {recs_settings.KEEP_FRESH_SECONDS:g} (as set)"
    runs: dict[str, list[dict[str, Any]]] = {keep_fresh: [], WITHOUT: []}
    for _ in range(args.repeats):
        for name, setting in ((keep_fresh, None), (WITHOUT, "0")):
            runs[name] += _serve_with_pauses(args, env, foryou, setting)
    speed_after = _reference_ms()

    rows = []
    for name, found in runs.items():
        first_max = [run["first_max"] for run in found]
        rows.append([
            name, len(found), f"{statistics.median(first_max):.1f}",
            f"{min(first_max):.1f}-{max(first_max):.1f}",
            f"{statistics.median(run['p50'] for run in found):.1f}",
            f"{statistics.median(run['p99'] for run in found):.1f}",
            " ".join(str(run["tail_in_first"]) for run in found),
        ])
    publish(
        "Serving after a pause (PostgreSQL, gunicorn on loopback)",
        ["setting", "pauses", "first second max ms (median)", "range", "p50 ms", "p99 ms",
         "of the slowest 1%, in the first second"],
        rows,
        machine=machine,
        started=started,
        notes=[
            f"The serving benchmark's shop and model; gunicorn {args.workers} workers x 1 "
            f"thread; after its warm-up each server had {args.pauses} pauses of "
            f"{args.pause:.0f} s with no request, each followed by GET for-you at "
            f"{args.rate:.0f}/s for {args.seconds:.0f} s (open loop, latency from when each "
            f"request was due; p50/p99: medians over the pauses); the settings in turns, "
            f"{args.repeats} server(s) each. {ahead} of the {users} shoppers the requests are "
            "spread over had a for-you list computed ahead, the rest computed theirs in the "
            "request. The machine's speed at rest (a fixed "
            f"Python job, median of 11): {speed_before:.0f} ms before, {speed_after:.0f} ms "
            "after.",
        ],
    )
    medians = {name: statistics.median(run["first_max"] for run in found)
               for name, found in runs.items()}
    print(f"RESULT first_second_max_ms={medians[keep_fresh]:.1f} "
          f"first_second_max_ms_without={medians[WITHOUT]:.1f}")


def _serve_with_pauses(args: argparse.Namespace, env: dict[str, str], foryou: list,
                       keep_fresh: str | None) -> list[dict[str, Any]]:
    from benchmarks._http_load import open_loop

    server_env = dict(env)
    if keep_fresh is not None:
        server_env["SHOP_RECS_KEEP_FRESH_SECONDS"] = keep_fresh
    options = argparse.Namespace(workers=args.workers, threads=1, max_requests=0,
                                 port=_free_port())
    server = _start_gunicorn(options, server_env)
    found = []
    try:
        _warm_up(options.port, foryou, workers=args.workers)
        _check_served_by_the_model(options.port, foryou[0])
        for _ in range(args.pauses):
            time.sleep(args.pause)
            result = open_loop(HOST, options.port, foryou, rate=args.rate, seconds=args.seconds)
            first = [ms for due, ms in zip(result.due_s, result.latencies_ms, strict=True)
                     if due < 1]
            found.append({"first_max": max(first), "p50": result.percentile(50),
                          "p99": result.percentile(99),
                          "tail_in_first": result.tail_seconds().get(0, 0)})
            print(f"  KEEP_FRESH_SECONDS {keep_fresh or 'as set'}: first second max "
                  f"{max(first):.1f} ms, p99 {result.percentile(99):.1f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return found


if __name__ == "__main__":
    main()
