"""The serving benchmark's CPU split keeps the time of a process that ends during a window.

A PostgreSQL backend whose connection reaches CONN_MAX_AGE ends mid-run; counting only the
processes alive at each sample made its group's CPU per request negative.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks import serving

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")

BURN_SECONDS = 0.3

# A parent (the postmaster's part) that starts a child, which burns CPU, waits for "go", burns
# again and ends; the parent reaps it and stays.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    here = Path(sys.argv[1])
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(here)])
    (here / "child").write_text(str(child.pid))
    child.wait()
    (here / "reaped").touch()
    time.sleep(60)
    """
)
CHILD = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    here = Path(sys.argv[1])
    def burn():
        end = time.thread_time() + {BURN_SECONDS}
        while time.thread_time() < end:
            pass
    burn()
    (here / "burnt").touch()
    while not (here / "go").exists():
        time.sleep(0.01)
    burn()
    """
)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def test_a_child_that_ends_in_the_window_keeps_its_time_in_the_group(tmp_path, monkeypatch):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), CHILD])
    try:
        _wait_for(tmp_path / "burnt")
        ours = {parent.pid, int((tmp_path / "child").read_text())}
        monkeypatch.setattr(serving, "_process_group",
                            lambda pid, arguments: "PostgreSQL" if pid in ours else None)
        before = serving._cpu_ticks()
        (tmp_path / "go").touch()
        _wait_for(tmp_path / "reaped")
        after = serving._cpu_ticks()
    finally:
        parent.kill()
        parent.wait()
    spent_seconds = (after["PostgreSQL"] - before["PostgreSQL"]) / os.sysconf("SC_CLK_TCK")
    # The child's second burn, made after the first sample by a process gone at the second.
    assert spent_seconds >= BURN_SECONDS / 2


def test_processes_are_grouped_by_their_command_line():
    group = serving._process_group
    assert group(os.getpid(), ["python", "-m", "benchmarks.serving"]) == "load generator"
    assert group(1, ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/x"]) == "PostgreSQL"
    assert group(1, ["postgres: postgres shop 127.0.0.1(5000) idle", ""]) == "PostgreSQL"
    assert group(1, ["python", "-m", "gunicorn", "demo.wsgi:application"]) == "web"
    assert group(1, ["redis-server 127.0.0.1:6379", ""]) == "Redis"
    assert group(1, ["/usr/bin/postgresql-helper"]) is None
