"""Shared by every benchmark: print a table and append it to BENCHMARKS.md with its context.

A figure is only worth keeping with the command that made it, the machine it ran on (this CPU
is shared, so the load average is recorded too), the date and the memory it took.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_FILE = REPO_ROOT / "BENCHMARKS.md"


def machine_description() -> str:
    """CPU model, cores usable by this process, and the 1-minute load average right now."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    return f"{model}, {cores} cores, load average {load:.1f} at start, {platform.system()}"


def code_description() -> str:
    """The commit the benchmark runs, and the files changed since it: which code a figure is
    of (BENCHMARKS.md itself, which every run appends to, is left out)."""
    try:
        commit = _git("rev-parse", "--short", "HEAD").strip()
        changed = [line[3:] for line in _git("status", "--porcelain").splitlines()
                   if line[3:] != BENCHMARKS_FILE.name]
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    if not changed:
        return f"commit {commit}"
    return f"commit {commit} with uncommitted changes to {', '.join(changed)}"


def _code_now() -> str:
    """CODE, and what it became if the code changed while the benchmark ran: a server or a
    subprocess it started after the change ran the new code, so such a figure is of neither."""
    now = code_description()
    if now == CODE:
        return CODE
    return f"{CODE}; CHANGED DURING THE RUN to {now}"


def _git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout


# Taken when a benchmark starts, not when it publishes its table (an edit in between is
# not the code that ran).
CODE = code_description()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Peak RSS while a block runs (sampled), for a per-model figure inside one process.

    ru_maxrss only ever grows, so after a big model it would hide a small one's footprint.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = current_rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mb())

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, current_rss_mb())


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    machine: str,
    notes: Sequence[str] = (),
    started: float | None = None,
) -> str:
    """Print the section and append it to BENCHMARKS.md; returns the text."""
    command = "python -m " + " ".join(
        [_module_name(), *(shlex.quote(argument) for argument in sys.argv[1:])]
    )
    lines = [
        f"## {title}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine}",
        f"- code: {_code_now()}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- peak RSS of the whole run: {peak_rss_mb():.0f} MB",
    ]
    if started is not None:
        lines.append(f"- wall time: {time.perf_counter() - started:.0f} s")
    lines += ["", markdown_table(headers, rows), ""]
    lines += [f"{note}" for note in notes]
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    new_file = not BENCHMARKS_FILE.exists()
    with BENCHMARKS_FILE.open("a", encoding="utf-8") as handle:
        if new_file:
            handle.write("# Benchmarks\n\nAppended by the scripts in `benchmarks/`; newest last.\n")
        handle.write("\n" + text)
    return text


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem
