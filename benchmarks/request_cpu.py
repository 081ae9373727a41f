"""Where the CPU time of one GET for-you goes: each part of the request, timed in-process.

    python -m benchmarks.request_cpu [--requests 2000] [--ahead]
                                     [--database shop_recs_bench_serving]

Runs on the database and model that ``python -m benchmarks.serving`` built (run that first).
Sends GET for-you requests (token auth, ``?limit=8``, spread over 3,000 shoppers with a history,
each list computed in its request: PRECOMPUTE_ACTIVE_DAYS None; with ``--ahead`` the job
computes the lists ahead first and the requests read them) through Django's WSGI handler in this
process, with no HTTP server and no other load, and adds up the CPU time of this thread spent in
each part of the request: the parts are timed by wrapping the functions that do them, and "the
rest" is Django, DRF and the middleware around them. The serving benchmark's web CPU per request
(from /proc, under load, the HTTP server included) is higher; this splits it so that the next
change goes where the time is.

Prints a table, appends it to BENCHMARKS.md, and ends with ``RESULT cpu_ms=<x>``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks._in_process import (
    add_database_arguments,
    model_description,
    open_serving_database,
    split_rows,
    timing,
)
from benchmarks.serving import _tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests")
    parser.add_argument("--ahead", action="store_true",
                        help="read the lists computed ahead (the job runs first) instead of "
                             "computing each in its request")
    add_database_arguments(parser)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = open_serving_database(args)
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    from benchmarks._report import machine_description, publish

    machine = machine_description()
    app = WSGIHandler()
    requests = [f"Token {key}" for key in _tokens(3000)]
    if args.ahead:
        from shop_recs.services.recommendations import precompute_for_you

        precompute_for_you()
    else:  # every list computed in its request: the model's path
        override_settings(
            SHOP_RECS={**settings.SHOP_RECS, "PRECOMPUTE_ACTIVE_DAYS": None}).enable()
    first = _get(app, requests[0])
    if b'"source":"model"' not in first.replace(b" ", b""):
        sys.exit(f"The for-you list did not come from the model: {first[:200]!r}")

    for authorization in requests[:300]:  # warm-up: the catalogue snapshot, rankings, caches
        _get(app, authorization)
    spent: Counter[str] = Counter()
    with _timed_parts(spent, model):
        began = time.thread_time_ns()
        for number in range(args.requests):
            _get(app, requests[number % len(requests)])
        total = time.thread_time_ns() - began

    rows, total_ms = split_rows(spent, total, args.requests,
                                "the rest (Django, DRF, middleware)", "whole request")
    publish(
        "CPU time of one GET for-you, by part (in-process)",
        ["part", "ms per request", "share"],
        rows,
        machine=machine,
        started=started,
        notes=[
            f"{args.requests} requests on the serving benchmark's database ({args.database}), "
            f"model {model_description(model)}; token auth, limit 8, over {len(requests)} shoppers "
            "with a history, "
            + ("their lists computed ahead by the job (--ahead) where it stored one; "
               if args.ahead else "each list computed in its request; ")
            + "Django's WSGI handler in this process, no HTTP server, no other load. "
            "CPU time of this thread (time.thread_time), summed per part over the requests."
        ],
    )
    print(f"RESULT cpu_ms={total_ms:.2f}")


def _get(app: Callable[..., Any], authorization: str) -> bytes:
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/recs/api/for-you/", "QUERY_STRING": "limit=8",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1", "HTTP_AUTHORIZATION": authorization,
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
    }
    status: list[str] = []
    body = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
    if not status[0].startswith("200"):
        raise RuntimeError(f"GET for-you answered {status[0]}: {body[:300]!r}")
    return body


@contextlib.contextmanager
def _timed_parts(spent: Counter[str], model: Any) -> Iterator[None]:
    """Wrap the functions that do each part so that their thread CPU time adds up in `spent`
    (none of them calls another: the parts do not overlap)."""
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.renderers import JSONRenderer

    import shop_recs.api.views as views
    import shop_recs.services.recommendations as recommendations
    from shop_recs.adapter import get_adapter
    from shop_recs.services import precomputed

    parts = [
        (TokenAuthentication, "authenticate", "token authentication (DRF, host's choice)"),
        (views.RecsAPIView, "list_query", "query string validation"),
        (recommendations, "load_history", "history read (with the purchases)"),
        (type(model.recommender), "recommend_batch", "model: top-k for the history"),
        (precomputed, "read", "list computed ahead (cache read)"),
        (recommendations, "apply_rules", "business rules"),
        (recommendations, "fetch_products", "product instances (one query)"),
        (recommendations, "make_click_token", "click tokens"),
        (type(get_adapter()), "product_url", "product URLs (host's get_absolute_url)"),
        (views, "record_impression", "impression queued"),
        (views.ListSerializer, "of", "response body"),
        (JSONRenderer, "render", "JSON rendering"),
    ]
    own = [(owner, name, vars(owner).get(name)) for owner, name, _ in parts]
    for owner, name, label in parts:
        setattr(owner, name, timing(getattr(owner, name), label, spent))
    try:
        yield
    finally:
        for owner, name, original in own:
            if original is None:  # it was inherited: uncover the parent's again
                delattr(owner, name)
            else:
                setattr(owner, name, original)


if __name__ == "__main__":
    main()
