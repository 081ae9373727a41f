"""Serving latency of the Recommender and memory of training on a large catalogue.

    python -m benchmarks.recsys_speed [--items 50000] [--large-items 100000] [--threads 1]

Latency: a model of the default size (d_model 64, 2 layers, text + ID, 384-d text) over
`--items` products, also with the text-match channel a shop's model has (with and without a
text prior), and a product placed after training (with_items); weights are random because speed
does not depend on them. Memory: one epoch of training on a `--large-items` catalogue (sampled
softmax, as `loss="auto"` picks), with the peak RSS of that phase. The last line is
machine-readable:
    RESULT items=<n> recommend_p50_ms=<x> recommend_p99_ms=<x> large_items=<n> train_peak_rss_mb=<x>
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from benchmarks._report import PeakMemory, machine_description, publish
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import LeaveOneOut
from recsys_core.inference import Recommender
from recsys_core.model import SeqRecModel
from recsys_core.training import train

TEXT_DIM = 384
HISTORY = 10


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    started = time.perf_counter()
    machine = machine_description()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows: list[list[object]] = []

    recommender = _recommender(args.items, rng)
    catalogue = recommender.item_ids
    histories = [list(rng.choice(catalogue, HISTORY, replace=False)) for _ in range(args.calls)]
    recommend = _latencies(lambda h: recommender.recommend(h, k=10), histories)
    rows.append([f"recommend top-10, {HISTORY}-item history", args.items, *recommend, None, None])
    similar = _latencies(lambda h: recommender.similar_items(h[0], k=10), histories)
    rows.append(["similar_items top-10", args.items, *similar, None, None])
    # A product the model never saw is placed by its text embedding (the similar-products
    # fallback); the first history item's text stands in for the new product's.
    texts, row_of = recommender.text_embeddings, {item: i for i, item in enumerate(catalogue)}
    like_text = _latencies(lambda h: recommender.items_like_text(
        texts[row_of[h[0]]], k=10, exclude=h[:1]), histories)
    rows.append(["items_like_text top-10 (a new product)", args.items, *like_text, None, None])
    # Products added after training, placed by their text (with_items): each one's own similar
    # list is ranked by its text, then kept; every call asks about another one (its first).
    new_ids = [f"new{i}" for i in range(args.calls)]
    placed = recommender.with_items(new_ids, texts[: args.calls])
    first = _latencies(lambda h: placed.similar_items(h[0], k=10), [[item] for item in new_ids])
    rows.append(["similar_items top-10 of a placed product, first request", args.items, *first,
                 None, None])
    candidates = list(rng.choice(catalogue, 100, replace=False))
    rerank = _latencies(lambda h: recommender.score(h, candidates), histories)
    rows.append(["score 100 candidates", args.items, *rerank, None, None])
    # A shop's default model also has the text-match channel, and a text prior when the
    # validation split chose one (shop_recs.registry.DEFAULT_TRAINING).
    for prior in (0.0, 1.0):
        matched = _recommender(args.items, np.random.default_rng(1), text_match_dim=64,
                               text_prior=prior)
        timings = _latencies(lambda h, r=matched: r.recommend(h, k=10), histories)
        rows.append([f"recommend top-10, {HISTORY}-item history, text match 64-d, text prior "
                     f"{prior:g}", args.items, *timings, None, None])
    batch = histories[:256]
    tick = time.perf_counter()
    recommender.recommend_batch(batch, k=10)
    per_second = len(batch) / (time.perf_counter() - tick)
    rows.append([f"recommend_batch of {len(batch)}", args.items, None, None, per_second, None])

    with PeakMemory() as memory:
        epoch_s = _train_large(args.large_items, args.large_users, rng)
    rows.append([f"train 1 epoch, {args.large_users} users, sampled softmax", args.large_items,
                 None, None, None, memory.peak_mb])
    publish(
        "Recommender speed and large-catalogue training memory",
        ["workload", "items", "p50 ms", "p99 ms", "shoppers/s", "peak RSS MB"],
        rows,
        machine=machine,
        started=started,
        notes=[
            f"- torch threads: {args.threads}; {args.calls} calls per latency row; model "
            f"d_model 64, 2 layers, text + ID ({TEXT_DIM}-d text); random weights.",
            f"- large-catalogue epoch: {epoch_s:.1f} s; peak RSS includes the Python process, "
            "torch and the catalogue's text embeddings "
            f"({args.large_items * TEXT_DIM * 4 / 2**20:.0f} MB as float32).",
            "- targets: recommend top-10 under 5 ms on 50,000 products; 100,000 products train "
            "in under 8 GB.",
        ],
    )
    print(f"RESULT items={args.items} recommend_p50_ms={recommend[0]:.3f} "
          f"recommend_p99_ms={recommend[1]:.3f} large_items={args.large_items} "
          f"train_peak_rss_mb={memory.peak_mb:.0f}")


def _recommender(n_items: int, rng: np.random.Generator, **config: Any) -> Recommender:
    texts = rng.normal(size=(n_items, TEXT_DIM)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=n_items, text_dim=TEXT_DIM, **config), texts)
    counts = rng.integers(0, 50, size=n_items + 1)
    model.set_item_counts(counts)
    return Recommender(model, [f"p{i}" for i in range(n_items)], item_counts=counts)


def _latencies(call, histories: list[list[str]]) -> tuple[float, float]:
    for history in histories[:20]:  # warm-up: allocator, lazy tables
        call(history)
    timings = []
    for history in histories:
        tick = time.perf_counter()
        call(history)
        timings.append((time.perf_counter() - tick) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def _train_large(n_items: int, n_users: int, rng: np.random.Generator) -> float:
    sequences = [rng.integers(1, n_items + 1, size=rng.integers(5, 30)) for _ in range(n_users)]
    kinds = [np.ones(len(s), dtype=np.int64) for s in sequences]
    empty = np.zeros(0, dtype=np.int64)
    split = LeaveOneOut(
        train=[s[:-2] for s in sequences], train_kinds=[k[:-2] for k in kinds],
        valid_history=[s[:-2] for s in sequences], valid_kinds=[k[:-2] for k in kinds],
        valid_target=np.array([s[-2] for s in sequences]), test_history=[], test_kinds=[],
        test_target=empty, valid_users=empty, test_users=empty,
    )
    texts = rng.normal(size=(n_items, TEXT_DIM)).astype(np.float32)
    config = TrainConfig(epochs=1, device="cpu")
    assert config.uses_sampled_loss(n_items), "the large catalogue must use sampled softmax"
    result = train(split, n_items, texts, ModelConfig(n_items=n_items, text_dim=TEXT_DIM),
                   config)
    return float(result.history[0]["seconds"])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--large-items", type=int, default=100_000)
    parser.add_argument("--large-users", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
