"""The serving benchmark's load generator: when the slowest requests were due."""

import gc
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks._http_load import LoadResult, open_loop


def test_tail_seconds_counts_the_requests_over_the_percentile_by_second() -> None:
    # 100 requests over 10 s at 10 ms, but three due in second 4 took 500 ms (a stall)
    due = [i / 10 for i in range(100)]
    latencies = [500.0 if 4.0 <= d < 4.3 else 10.0 for d in due]
    result = LoadResult(latencies_ms=latencies, due_s=due, seconds=10)

    assert result.tail_seconds(97) == {4: 3}
    wider = result.tail_seconds(95)
    assert wider[4] == 3 and sum(wider.values()) == 5
    assert LoadResult().tail_seconds() == {}


class _Ok(BaseHTTPRequestHandler):
    frozen_while_serving: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.frozen_while_serving.append(gc.get_freeze_count())
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_open_loop_records_when_each_request_was_due_with_the_collector_frozen() -> None:
    """The process's objects are frozen while it sends (a full collection would stall the
    sender and count as the server's latency), and unfrozen after."""
    _Ok.frozen_while_serving = []
    frozen_before = gc.get_freeze_count()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = open_loop("127.0.0.1", server.server_address[1], [("/", {})], rate=40,
                           seconds=0.5, threads=4)
    finally:
        server.shutdown()
    assert result.errors == {}
    assert len(result.due_s) == len(result.latencies_ms) == 20
    assert sorted(result.due_s) == pytest.approx([i / 40 for i in range(20)])
    assert len(_Ok.frozen_while_serving) == 20
    assert min(_Ok.frozen_while_serving) > frozen_before
    assert gc.get_freeze_count() == frozen_before
