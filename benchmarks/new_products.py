"""Products added after training: what placing them by their text alone is worth.

    python -m benchmarks.new_products [--new-share 0.1] [--seed 0] [--max-train-seconds 600]
                                      [--boosts 1.1 1.25 1.5] [--similarity-weights 0.8 1.0]
                                      [--data-root ../shared/data]

A shop adds products between trainings. ``Recommender.with_items`` places such a product by its
text alone (the model's text projection and text-match code, with the weight of an item that had
no interactions), so that it can enter for-you lists before the next training. This measures
whether that helps shoppers or gets in the way, on Amazon Scientific (real texts and sequences):

1. a share of the catalogue (``--new-share``, seeded) becomes "new": their events are removed
   from training, and so is every shopper's last event (the test case);
2. a model of the shop's shape (the plugin's default training settings) is trained on the rest
   through ``recsys_core.pipeline``, as the shop's training job does;
3. each shopper's last event is then ranked against the WHOLE catalogue, history included as it
   happened (new products in it are known only once placed), history removed from the ranking:
   first with the new products left out (what serving did before), then with them placed,
   then placed with each of ``--boosts`` (the plugin's NEW_PRODUCT_BOOST: what more room for new
   products costs the others).

The same cases are then ranked as the product page of the shopper's last product lists them
(its similar list), with the new products left out and placed, their similarity weighted by
``with_items``' default ``similarity_weight`` and by each of ``--similarity-weights``.

Reports NDCG@10 / Recall@10 over all test cases, over those whose next product is a new one and
over those whose next product the model was trained on (what placing must not harm), the share
of top-10 slots the new products take, and the text-only nearest neighbour of the last product
as a reference. Appends the table to BENCHMARKS.md; the last line is
``RESULT new_share=<x> ndcg@10_without=<x> ndcg@10_placed=<x> new_target_ndcg@10=<x>
known_target_ndcg@10_without=<x> known_target_ndcg@10_placed=<x>``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import django
import numpy as np
import torch

from benchmarks._report import REPO_ROOT, machine_description, publish
from benchmarks.quality import _print_progress, _text_encoder
from recsys_core.baselines import LastItemTextModel
from recsys_core.config import TrainConfig
from recsys_core.data import SequenceData, load_scientific
from recsys_core.evaluation import ScoreFn, evaluate
from recsys_core.inference import NEIGHBOURS, PLACED_SIMILARITY_WEIGHT, Recommender
from recsys_core.pipeline import train_version


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-share", type=float, default=0.1,
                        help="share of the catalogue added after training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boosts", type=float, nargs="*", default=[1.1, 1.25, 1.5],
                        help="NEW_PRODUCT_BOOST values to measure besides 1")
    parser.add_argument("--similarity-weights", type=float, nargs="*", default=[0.8, 1.0],
                        help="with_items similarity weights to measure besides the default")
    parser.add_argument("--max-train-seconds", type=float, default=600.0)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if not 0 < args.new_share < 1:
        parser.error("--new-share must be between 0 and 1")
    if any(not boost > 0 for boost in args.boosts):
        parser.error("--boosts must be > 0")
    if any(not weight > 0 for weight in args.similarity_weights):
        parser.error("--similarity-weights must be > 0")

    started = time.perf_counter()
    data = load_scientific(args.data_root)
    rng = np.random.default_rng(args.seed)
    is_new = np.zeros(data.n_items + 1, dtype=bool)
    is_new[1 + rng.choice(data.n_items, round(args.new_share * data.n_items), replace=False)] = True
    histories = [sequence[:-1] for sequence in data.sequences]
    kinds = [sequence_kinds[:-1] for sequence_kinds in data.kinds]
    targets = np.array([sequence[-1] for sequence in data.sequences], dtype=np.int64)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    django.setup()
    from shop_recs.registry import DEFAULT_TRAINING  # the shop's model shape

    settings = dict(DEFAULT_TRAINING)
    model_overrides = {"text_match_dim": settings.pop("text_match_dim")}
    train_config = TrainConfig(**settings, num_threads=torch.get_num_threads(),
                               max_train_seconds=args.max_train_seconds)
    encoder = _text_encoder()
    with tempfile.TemporaryDirectory() as output:
        result = train_version(
            _without(data, histories, kinds, is_new),
            model_config_overrides=model_overrides,
            train_config=train_config,
            text_encoder=encoder,
            output_dir=Path(output) / "version",
            progress=_print_progress,
            baseline_scores=False,
        )
    recommender = result.recommender
    texts = encoder.encode(data.item_texts)

    new_targets = is_new[targets]

    def report(score_fn: ScoreFn) -> dict[str, object]:
        def ndcg(rows: np.ndarray) -> tuple[float, float]:
            picked = np.flatnonzero(rows)
            found = evaluate(score_fn, [histories[i] for i in picked], [kinds[i] for i in picked],
                             targets[picked], data.n_items)
            return found.metrics["ndcg@10"], found.metrics["recall@10"]
        everything = ndcg(np.ones(len(targets), dtype=bool))
        return {"all": everything, "new": ndcg(new_targets), "known": ndcg(~new_targets),
                "new_share_top10": _new_share_of_top10(score_fn, histories, kinds, is_new)}

    without = report(recommender.as_score_fn(data.item_ids))
    new_positions = np.flatnonzero(is_new) - 1

    def placed_with(boost: float) -> dict[str, object]:
        extended = recommender.with_items([data.item_ids[i] for i in new_positions],
                                          texts[new_positions], boost=boost)
        return report(extended.as_score_fn(data.item_ids))

    placed = placed_with(1.0)

    def product_pages(similarity_weight: float) -> dict[str, object]:
        extended = recommender.with_items([data.item_ids[i] for i in new_positions],
                                          texts[new_positions], similarity_weight=similarity_weight)
        return report(ProductPageSimilar(extended, data.item_ids, texts))

    pages_before = report(ProductPageSimilar(recommender, data.item_ids, texts))
    pages_placed = product_pages(PLACED_SIMILARITY_WEIGHT)
    rows = [
        ["model, new products left out (before)", *_cells(without)],
        ["model, new products placed by text (with_items)", *_cells(placed)],
        *([f"model, new products placed, NEW_PRODUCT_BOOST {boost:g}",
           *_cells(placed_with(boost))] for boost in args.boosts),
        ["text-only nearest neighbour of the last product",
         *_cells(report(LastItemTextModel(texts)))],
        ["similar list of the last product, new products left out (before)",
         *_cells(pages_before)],
        [f"similar list of the last product, new products placed, similarity weight "
         f"{PLACED_SIMILARITY_WEIGHT:g} (with_items)", *_cells(pages_placed)],
        *([f"similar list of the last product, new products placed, similarity weight {weight:g}",
           *_cells(product_pages(weight))] for weight in args.similarity_weights),
    ]
    header = ["ranking", "NDCG@10 all", "Recall@10 all", "NDCG@10 new target",
              "Recall@10 new target", "NDCG@10 known target", "Recall@10 known target",
              "top-10 slots held by new products"]
    notes = [
        f"Amazon Scientific: {data.n_items} products, {len(data.users)} shoppers; "
        f"{int(is_new.sum())} products ({args.new_share:.0%}, seed {args.seed}) added after "
        f"training; {len(targets)} test cases (each shopper's last event), "
        f"{int(new_targets.sum())} of them a new product.",
        f"Model of the shop's shape (shop_recs.registry.DEFAULT_TRAINING: {DEFAULT_TRAINING}), "
        f"trained through recsys_core.pipeline on the other products' events without each "
        f"shopper's last one, {result.train_seconds:.0f} s (max {args.max_train_seconds:.0f} s).",
        "Every case ranks the whole catalogue with the shopper's history removed; new products "
        "in a history count only once placed.",
        "Similar list of the last product: what the product page of the shopper's last product "
        "lists (Recommender.similar_items: the cosine of the model's item vectors, each placed "
        "product's weighted by with_items' similarity_weight; a placed product's own page ranks "
        "by text), or, for a product the model does not know, its text neighbours (the "
        "plugin's fallback). Before: new products are in no list.",
    ]
    publish(
        "Products added after training, placed by their text (with_items)",
        header,
        rows,
        machine=machine_description(),
        notes=notes,
        started=started,
    )
    print(
        f"RESULT new_share={args.new_share} ndcg@10_without={without['all'][0]:.4f} "
        f"ndcg@10_placed={placed['all'][0]:.4f} new_target_ndcg@10={placed['new'][0]:.4f} "
        f"known_target_ndcg@10_without={without['known'][0]:.4f} "
        f"known_target_ndcg@10_placed={placed['known'][0]:.4f}"
    )


class ProductPageSimilar:
    """ScoreFn: the similar list of the history's last product, as its product page shows it.

    ``Recommender.similar_items`` for a product the recommender knows (a placed one included),
    ``items_like_text`` of its text for one it does not (the plugin's fallback). The list's best
    NEIGHBOURS are scored and the rest -inf: far beyond a top-10 once the history is removed.
    """

    def __init__(self, recommender: Recommender, item_ids: list[str], texts: np.ndarray) -> None:
        self.recommender = recommender
        self.item_ids = item_ids
        self.texts = texts
        self.known = set(recommender.item_ids)
        self.column = {item: column for column, item in enumerate(item_ids, start=1)}

    def __call__(self, histories: list[np.ndarray], kinds: list[np.ndarray]) -> np.ndarray:
        scores = np.full((len(histories), len(self.item_ids) + 1), -np.inf, dtype=np.float32)
        for row, history in enumerate(histories):
            if not len(history):
                continue
            anchor = self.item_ids[history[-1] - 1]
            if anchor in self.known:
                found = self.recommender.similar_items(anchor, k=NEIGHBOURS)
            else:
                found = self.recommender.items_like_text(self.texts[history[-1] - 1],
                                                         k=NEIGHBOURS, exclude=[anchor])
            scores[row, [self.column[s.item] for s in found]] = [s.score for s in found]
        return scores


def _without(
    data: SequenceData, histories: list[np.ndarray], kinds: list[np.ndarray], is_new: np.ndarray
) -> SequenceData:
    """The shop before the new products: their events dropped, the others renumbered."""
    kept = np.flatnonzero(~is_new[1:]) + 1
    renumber = np.zeros(data.n_items + 1, dtype=np.int64)
    renumber[kept] = np.arange(1, len(kept) + 1)
    keep = [~is_new[history] for history in histories]
    return SequenceData(
        item_ids=[data.item_ids[i - 1] for i in kept],
        users=list(data.users),
        sequences=[renumber[h[k]] for h, k in zip(histories, keep, strict=True)],
        kinds=[kind[k] for kind, k in zip(kinds, keep, strict=True)],
        item_texts=[data.item_texts[i - 1] for i in kept] if data.item_texts else None,
    )


def _new_share_of_top10(
    score_fn: ScoreFn, histories: list[np.ndarray], kinds: list[np.ndarray], is_new: np.ndarray
) -> float:
    """Share of the top-10 slots (history removed) that new products take."""
    held = shown = 0
    for start in range(0, len(histories), 256):
        batch = histories[start : start + 256]
        scores = torch.as_tensor(score_fn(batch, kinds[start : start + 256]))
        scores[:, 0] = -torch.inf
        for row, history in enumerate(batch):
            scores[row, torch.from_numpy(np.asarray(history))] = -torch.inf
        top_scores, top = scores.topk(10, dim=1)
        top = top[torch.isfinite(top_scores)].numpy()
        held += int(is_new[top].sum())
        shown += len(top)
    return held / max(shown, 1)


def _cells(found: dict[str, object]) -> list[object]:
    return [*found["all"], *found["new"], *found["known"], found["new_share_top10"]]


if __name__ == "__main__":
    main()
