"""Text-encoder throughput on real product texts, cold and from the disk cache.

    python -m benchmarks.text_encoder [--data-root ../shared/data] [--limit 2000] [--repeats 3]

Workloads: the demo shop's product titles (about 10 word-piece tokens), real shop titles
(CrowdFlower search products) and Amazon Scientific's title + categories + brand texts (long).
Every figure is stated with the texts' mean token count (including [CLS] and [SEP], after
truncation to max_length). The CPU is shared: `--wait-idle` waits for a quiet moment first.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._report import REPO_ROOT, machine_description, publish
from recsys_core.text import TextEncoder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default=None, help="local HF model folder (default: MiniLM)")
    parser.add_argument("--limit", type=int, default=2000, help="texts per workload")
    parser.add_argument("--repeats", type=int, default=3, help="cold runs per workload")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for the 1-minute load average to drop below 1")
    args = parser.parse_args(argv)

    _wait_for_idle(args.wait_idle)
    machine = machine_description()
    started = time.perf_counter()
    workloads = {
        "demo shop titles": _demo_titles(args.limit),
        "shop titles (CrowdFlower products)": _column(
            args.data_root / "crowdflower-search" / "products.tsv", 1, args.limit, header=True
        ),
        "Scientific title+categories+brand": _column(
            args.data_root / "amazon-scientific" / "Scientific.text", 1, args.limit, header=True
        ),
    }
    rows = []
    for name, texts in workloads.items():
        rows.append(_measure(name, texts, args))
    publish(
        "Text encoder throughput",
        ["workload", "texts", "mean tokens", "batch", "cold products/s (best)",
         "cold products/s (median)", "1 thread: products per CPU-s", "cached products/s"],
        rows,
        machine=machine,
        started=started,
        notes=[
            "Cold = fresh encoder, empty cache, all cores (model load excluded, one warm-up "
            "batch first); wall clock, so it falls when others load the shared CPU.",
            "Cached = a new encoder instance reading the disk cache the cold run wrote.",
            "Targets: >= 400 products/s for ~10-token titles, >= 100/s for ~46-token texts.",
        ],
    )


def _measure(name: str, texts: list[str], args: argparse.Namespace) -> list[object]:
    def new_encoder(cache_dir: Path | None = None) -> TextEncoder:
        return TextEncoder(args.model, cache_dir=cache_dir, max_length=args.max_length,
                           batch_size=args.batch_size)

    cold_rates, lengths = [], []
    for _ in range(args.repeats):
        encoder = new_encoder()  # a fresh instance: nothing cached in memory either
        lengths = [len(ids) for ids in encoder.tokenizer(
            texts, truncation=True, max_length=args.max_length)["input_ids"]]
        encoder._embed(texts[: args.batch_size])  # warm-up: first calls allocate and plan
        start = time.perf_counter()
        encoder.encode(texts)
        cold_rates.append(len(texts) / (time.perf_counter() - start))
    single_thread_rate = _cpu_second_rate(new_encoder(), texts, args.batch_size)
    with tempfile.TemporaryDirectory() as cache_dir:
        expected = new_encoder(Path(cache_dir)).encode(texts)
        reader = new_encoder(Path(cache_dir))
        start = time.perf_counter()
        cached = reader.encode(texts)
        cached_rate = len(texts) / (time.perf_counter() - start)
    if not np.array_equal(cached, expected):
        raise AssertionError("vectors read from the cache differ from the ones written")
    return [name, len(texts), float(np.mean(lengths)), args.batch_size, max(cold_rates),
            statistics.median(cold_rates), single_thread_rate, cached_rate]


def _cpu_second_rate(encoder: TextEncoder, texts: list[str], batch_size: int) -> float:
    """Products per CPU-second on one thread: what the model costs, whatever else is running.

    On a shared machine wall-clock rates fall with other people's load; CPU time on one thread
    (no spinning between threads) stays close to the true cost, so the two together say how
    far a busy run was from an idle one (an idle 2-core run gets about twice this).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder._embed(texts[:batch_size])
        start = time.process_time()
        encoder.encode(texts)
        return len(texts) / (time.process_time() - start)
    finally:
        torch.set_num_threads(threads)


def _wait_for_idle(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(5)


def _demo_titles(limit: int) -> list[str]:
    """Titles of the demo shop's generated catalogue (deterministic, no data file needed)."""
    from demo.generator import generate_catalogue
    from demo.vocabulary import CATEGORIES

    return [product.title for product in generate_catalogue(limit, random.Random(1), CATEGORIES)]


def _column(path: Path, column: int, limit: int, *, header: bool) -> list[str]:
    """The given tab-separated column of the first `limit` data lines."""
    lines = path.read_text(encoding="utf-8").splitlines()[1 if header else 0:]
    texts = [line.split("\t")[column].strip() for line in lines if line.strip()]
    if not texts:
        raise SystemExit(f"{path}: no texts")
    return texts[:limit]


if __name__ == "__main__":
    main()
