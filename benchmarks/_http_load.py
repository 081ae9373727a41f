"""Load generators for HTTP benchmarks on loopback.

``open_loop`` sends requests at a fixed rate whatever the server does, and measures each
latency from the moment the request was *due*, so a stalled server shows up in the tail instead
of slowing the sender down (no coordinated omission). ``closed_loop_wrk`` finds the maximum
throughput with wrk (Debian package ``wrk``) and a Lua script that picks a random request.
"""

from __future__ import annotations

import gc
import http.client
import queue
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# (path, headers) of one request
Request = tuple[str, dict[str, str]]


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    due_s: list[float] = field(default_factory=list)  # when each was due, from the start
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def tail_seconds(self, q: float = 99) -> Counter[int]:
        """How many of the slowest ``100 - q`` % of the requests were due in each second of the
        run: a tail made by stalls (a rebuild, a collection, the machine) falls in a few
        seconds; one made by a queue that is too long, all over the run."""
        count = len(self.latencies_ms)
        slowest = sorted(range(count), key=self.latencies_ms.__getitem__)
        tail = slowest[count - max(1, round(count * (100 - q) / 100)):] if count else []
        return Counter(int(self.due_s[i]) for i in tail)

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def open_loop(host: str, port: int, requests: Sequence[Request], *, rate: float,
              seconds: float, threads: int = 32, seed: int = 0) -> LoadResult:
    """GET random ``requests`` at ``rate`` per second for ``seconds``; non-2xx count as errors.

    What the calling process holds is frozen for the garbage collector while it runs: a full
    collection over a benchmark's objects (a Django shop, a model, a job just run in-process)
    stops this process's threads for a few hundred milliseconds, and every request due
    meanwhile would count it as the server's latency."""
    rng = random.Random(seed)
    due: queue.Queue[tuple[float, Request] | None] = queue.Queue()
    result = LoadResult()
    lock = threading.Lock()

    def worker(start: float) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        while (job := due.get()) is not None:
            scheduled, (path, headers) = job
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                problem = None if response.status < 300 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                problem = type(exc).__name__
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=30)
            elapsed = (time.perf_counter() - scheduled) * 1000
            with lock:
                if problem is None:
                    result.latencies_ms.append(elapsed)
                    result.due_s.append(scheduled - start)
                else:
                    result.errors[problem] = result.errors.get(problem, 0) + 1
        connection.close()

    gc.collect()
    gc.freeze()
    try:
        start = time.perf_counter()
        pool = [threading.Thread(target=worker, args=(start,), daemon=True)
                for _ in range(threads)]
        for thread in pool:
            thread.start()
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            due.put((scheduled, rng.choice(requests)))
        for _ in pool:
            due.put(None)
        for thread in pool:
            thread.join()
        result.seconds = time.perf_counter() - start
    finally:
        gc.unfreeze()
    return result


def closed_loop_wrk(host: str, port: int, requests: Sequence[Request], *, seconds: int,
                    connections: int = 16, threads: int = 2) -> float | None:
    """Requests per second that wrk reaches (None when wrk is not installed)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    entries = ",\n".join(
        "{" + _lua_string(path) + ", {" + ", ".join(
            f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
        ) + "}}"
        for path, headers in requests
    )
    script = (
        "math.randomseed(1)\n"
        f"local requests = {{\n{entries}\n}}\n"
        "request = function()\n"
        "  local r = requests[math.random(#requests)]\n"
        '  return wrk.format("GET", r[1], r[2])\n'
        "end\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "requests.lua"
        lua.write_text(script)
        out = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(lua),
             f"http://{host}:{port}/"],
            capture_output=True, text=True, check=True,
        ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} error responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
