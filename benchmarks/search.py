"""Search quality and speed on real shop queries (CrowdFlower), with the service's own ranker.

    python -m benchmarks.search [--products P --queries Q --qrels R] [--scale 100000]

Every query ranks ALL products; NDCG@10 with graded labels (unjudged = irrelevant) is reported
for BM25 (the anchor: k1 1.2, b 0.75, title + description, no stemming), our keyword ranker
(BM25 with light stemming and the title counted twice), meaning alone (all-MiniLM-L6-v2 cosine)
and the fusion of both — the same ``recsys_core.search.HybridSearch`` the plugin serves with.

The fusion weight is never scored on the queries it was tuned on: the queries are split in two
halves at random, the weight that is best on one half is scored on the other and vice versa,
and the held-out scores are averaged over ten such splits (the RESULT line). The shipped default
weight's score on all queries is shown beside it for reference only, since 0.3 was picked
from these figures.

Typo robustness: each query gets one typo (a swapped, dropped or doubled letter in its longest
word); the misspelt queries are ranked with and without spelling correction.

Speed: a query's latency is spelling correction + embedding the query (not cached: every query
is new; on one thread, as the service does) + BM25 + cosine + fusion + top 10, one query at a
time. Retrieval alone (no embedding) is also timed on a catalogue grown to --scale products (the
real one repeated, embeddings with a little noise), where the index keeps 128 principal
directions of the embeddings as it does above 20,000 products; the quality that reduction costs
is measured on the real catalogue (a row of the table).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks._report import REPO_ROOT, machine_description, publish
from recsys_core.search import (
    DEFAULT_KEYWORD_WEIGHT,
    REDUCE_ABOVE,
    REDUCED_DIMS,
    DenseIndex,
    HybridSearch,
    KeywordIndex,
    fuse,
    graded_ndcg,
    single_threaded,
    top_k,
    words,
)
from recsys_core.text import TextEncoder

DATA = REPO_ROOT.parent / "shared" / "data" / "crowdflower-search"
TEXT_CACHE = REPO_ROOT / "var" / "text-cache"
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0)
N_SPLITS = 10
BM25_ANCHOR = 0.727


@dataclass
class Dataset:
    product_ids: list[str]
    titles: list[str]
    texts: list[str]  # title + ". " + description, as the plugin's adapter joins fields
    queries: list[tuple[str, str]]  # (query id, text)
    qrels: dict[str, dict[str, int]]  # query id -> product id -> label (highest if repeated)


def load(products: Path, queries: Path, qrels: Path) -> Dataset:
    csv.field_size_limit(sys.maxsize)
    product_ids, titles, texts = [], [], []
    for row in _rows(products):
        title, description = row[1].strip(), row[2].strip() if len(row) > 2 else ""
        product_ids.append(row[0])
        titles.append(title)
        texts.append(". ".join(part for part in (title, description) if part))
    judged: dict[str, dict[str, int]] = {}
    for row in _rows(qrels):
        labels = judged.setdefault(row[0], {})
        labels[row[1]] = max(labels.get(row[1], 0), int(row[2]))
    return Dataset(product_ids, titles, texts, [(r[0], r[1]) for r in _rows(queries)], judged)


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]


def misspell(query: str, rng: random.Random) -> str:
    """One typo in the query's longest word (of 4+ letters): swap, drop or double a letter."""
    found = words(query)
    target = max(found, key=len, default="")
    if len(target) < 4:
        return query
    i = rng.randrange(1, len(target) - 1)
    edit = rng.choice(("swap", "drop", "double"))
    if edit == "swap":
        typo = target[:i] + target[i + 1] + target[i] + target[i + 2:]
    elif edit == "drop":
        typo = target[:i] + target[i + 1:]
    else:
        typo = target[:i] + target[i] + target[i:]
    return query.lower().replace(target, typo, 1)


def cross_validated(per_weight: dict[float, np.ndarray], seed: int = 0) -> tuple[float, list]:
    """Mean held-out NDCG over N_SPLITS random halvings, and the weights each half picked."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(per_weight.values())))
    held_out, picked = [], []
    for _ in range(N_SPLITS):
        order = rng.permutation(n)
        halves = (order[: n // 2], order[n // 2:])
        total = 0.0
        for tune, test in (halves, halves[::-1]):
            weight = max(WEIGHT_GRID, key=lambda w: per_weight[w][tune].mean())
            picked.append(weight)
            total += per_weight[weight][test].sum()
        held_out.append(total / n)
    return float(np.mean(held_out)), picked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=Path, default=DATA / "products.tsv")
    parser.add_argument("--queries", type=Path, default=DATA / "queries.tsv")
    parser.add_argument("--qrels", type=Path, default=DATA / "qrels.tsv")
    parser.add_argument("--scale", type=int, default=100_000,
                        help="catalogue size for the retrieval-only timing (0: skip)")
    args = parser.parse_args(argv)
    machine = machine_description()
    started = time.perf_counter()

    data = load(args.products, args.queries, args.qrels)
    print(f"{len(data.texts)} products, {len(data.queries)} queries", flush=True)
    encoder = TextEncoder(cache_dir=TEXT_CACHE)
    embed_started = time.perf_counter()
    embeddings = encoder.encode(data.texts, progress=_progress)
    embed_seconds = time.perf_counter() - embed_started
    search = HybridSearch(data.texts, embeddings, titles=data.titles)
    bm25 = KeywordIndex(data.texts, stemmed=False, title_weight=1)

    def embed_query(text: str) -> np.ndarray:
        with single_threaded():  # as the plugin's search service embeds a query
            return encoder.encode_query(text)

    def ndcg(qid: str, scores: np.ndarray) -> float:
        ranking = [data.product_ids[i] for i in top_k(scores, 10)]
        return graded_ndcg(ranking, data.qrels.get(qid, {}))

    # Clean queries: every ranker, and the latency of the whole query path.
    per_weight: dict[float, list[float]] = {w: [] for w in WEIGHT_GRID}
    rows_bm25, latencies, cpu_ms = [], [], []
    for qid, query in data.queries:
        tick, cpu_tick = time.perf_counter(), time.process_time()
        corrected = search.correct(query).text
        vector = embed_query(corrected)
        search.search(corrected, vector, 10)
        latencies.append((time.perf_counter() - tick) * 1000)
        cpu_ms.append((time.process_time() - cpu_tick) * 1000)
        rows_bm25.append(ndcg(qid, bm25.scores(query)))
        keyword = search.keyword.scores(corrected)
        for weight in WEIGHT_GRID:
            fused = search.fused_scores(corrected, vector, keyword_scores=keyword,
                                        keyword_weight=weight)
            per_weight[weight].append(ndcg(qid, fused))
    weights = {w: np.array(v) for w, v in per_weight.items()}
    fused_cv, picked = cross_validated(weights)

    # The same fusion with embeddings reduced as for catalogues above REDUCE_ABOVE products.
    reduced = DenseIndex(embeddings, dims=REDUCED_DIMS)
    reduced_rows = []
    for qid, query in data.queries:
        corrected = search.correct(query).text
        vector = embed_query(corrected)  # from the encoder's cache of recent queries
        fused = fuse(search.keyword.scores(corrected), reduced.scores(vector),
                     DEFAULT_KEYWORD_WEIGHT)
        reduced_rows.append(ndcg(qid, fused))

    # Misspelt queries: with and without correction (the shipped weight).
    rng = random.Random(0)
    typo_plain, typo_fixed, n_typos, n_fixed = [], [], 0, 0
    for qid, query in data.queries:
        typo = misspell(query, rng)
        n_typos += typo != query.lower()
        corrected = search.correct(typo).text
        n_fixed += corrected.lower() == query.lower()
        vector = embed_query(corrected)
        typo_fixed.append(ndcg(qid, search.fused_scores(corrected, vector)))
        typo_plain.append(ndcg(qid, search.fused_scores(typo, embed_query(typo))))

    p50, p99 = np.percentile(latencies, [50, 99])
    cpu50, cpu99 = np.percentile(cpu_ms, [50, 99])
    scale_rows = _scaled_retrieval(data, embeddings, embed_query, args.scale) if args.scale else []
    bm25_ndcg = float(np.mean(rows_bm25))
    rows = [
        ["BM25 (anchor, our run)", bm25_ndcg, "title + description, k1 1.2, b 0.75"],
        ["keyword (BM25, stems, title x2)", float(weights[1.0].mean()), "recsys_core KeywordIndex"],
        ["meaning (MiniLM cosine)", float(weights[0.0].mean()), "recsys_core DenseIndex"],
        ["fused, 2-fold cross-validated weight", fused_cv,
         f"held-out halves, {N_SPLITS} random splits; weights picked: "
         f"{min(picked)}..{max(picked)} (median {float(np.median(picked))})"],
        [f"fused, shipped weight {DEFAULT_KEYWORD_WEIGHT} (all queries)",
         float(weights[DEFAULT_KEYWORD_WEIGHT].mean()), "reference only: chosen on these queries"],
        [f"fused, shipped weight, embeddings cut to {REDUCED_DIMS} dims",
         float(np.mean(reduced_rows)),
         f"as the index does above {REDUCE_ABOVE:,} products (principal directions)"],
        ["misspelt queries, fused, no correction", float(np.mean(typo_plain)),
         f"{n_typos} queries with one typo"],
        ["misspelt queries, fused, corrected", float(np.mean(typo_fixed)),
         f"{n_fixed} of {n_typos} typos corrected back exactly"],
    ]
    notes = [
        f"Target: fused >= {1.05 * BM25_ANCHOR:.3f} (5% above the published BM25 anchor "
        f"{BM25_ANCHOR}); our BM25 run gives {bm25_ndcg:.4f} (tokenisation and ties differ).",
        f"Query latency (correction + query embedding + BM25 + cosine + fusion + top 10) over "
        f"{len(data.queries)} new queries on {len(data.texts)} products: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms (CPU time of the process: p50 {cpu50:.1f} ms, p99 {cpu99:.1f} ms; "
        "CPU above wall: two torch threads; wall above CPU: waiting for a core). Catalogue "
        f"embedding: {embed_seconds:.0f} s (from the text cache when it is warm).",
        *scale_rows,
    ]
    publish("Personalised search: quality on real shop queries", ["ranker", "NDCG@10", "notes"],
            rows, machine=machine, notes=notes, started=started)
    print(f"RESULT ndcg@10={fused_cv:.4f} bm25={bm25_ndcg:.4f} p99_ms={p99:.1f}")


def _scaled_retrieval(data: Dataset, embeddings: np.ndarray,
                      embed_query: Callable[[str], np.ndarray], scale: int) -> list[str]:
    """Retrieval latency (BM25 + cosine + fusion + top 10, query vector given) at ``scale``."""
    repeats = -(-scale // len(data.texts))
    texts = (data.texts * repeats)[:scale]
    titles = (data.titles * repeats)[:scale]
    rng = np.random.default_rng(0)
    grown = np.tile(embeddings, (repeats, 1))[:scale]
    grown = grown + rng.normal(0, 0.01, grown.shape).astype(np.float32)
    tick = time.perf_counter()
    search = HybridSearch(texts, grown, titles=titles)
    build_s = time.perf_counter() - tick
    vectors = [embed_query(search.correct(q).text) for _, q in data.queries]
    reduced = search.dense is not None and search.dense.projection is not None
    timings, cpu_ms = [], []
    for _ in range(3):
        for (_, query), vector in zip(data.queries, vectors, strict=True):
            tick, cpu_tick = time.perf_counter(), time.process_time()
            search.search(search.correct(query).text, vector, 10)
            timings.append((time.perf_counter() - tick) * 1000)
            cpu_ms.append((time.process_time() - cpu_tick) * 1000)
    p50, p99 = np.percentile(timings, [50, 99])
    cpu50, cpu99 = np.percentile(cpu_ms, [50, 99])
    return [
        f"Retrieval alone at {scale:,} products (query vector given; {len(timings)} queries; "
        f"embeddings {'cut to ' + str(REDUCED_DIMS) + ' dims' if reduced else 'whole'}): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (CPU time p50 {cpu50:.1f} ms, p99 {cpu99:.1f} ms); "
        "building the index (BM25, typo vocabulary, "
        f"embedding matrix) took {build_s:.1f} s."
    ]


def _progress(done: int, total: int) -> None:
    if done == total or done % 1024 < 64:
        print(f"  embedded {done}/{total}", flush=True)


if __name__ == "__main__":
    main()
