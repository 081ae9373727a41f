"""Products added after training: what placing them by their text alone is worth.

    python -m benchmarks.new_products [--new-share 0.1] [--seed 0] [--max-train-seconds 600]
                                      [--boosts 1.1 1.25 1.5] [--data-root ../shared/data]

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

The same cases are then ranked as the product page of the shopper's last product would list
them (its similar list), with the new products left out and placed: whether placing them is worth
doing on product pages too.

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
from recsys_core.inference import Recommender
from recsys_core.pipeline import train_version


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-share", type=float, default=0.1,
                        help="share of the catalogue added after training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--boosts", type=float, nargs="*", default=[1.1, 1.25, 1.5],
                        help="NEW_PRODUCT_BOOST values to measure besides 1")
    parser.add_argument("--max-train-seconds", type=float, default=600.0)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if not 0 < args.new_share < 1:
        parser.error("--new-share must be between 0 and 1")
    if any(not boost > 0 for boost in args.boosts):
        parser.error("--boosts must be > 0")

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
    extended = recommender.with_items([data.item_ids[i] for i in new_positions],
                                      texts[new_positions])
    product_page = {
        "before": report(ProductPageSimilar(recommender, data.item_ids, texts)),
        "placed": report(ProductPageSimilar(extended, data.item_ids, texts)),
        "placed, text for a new page": report(
            ProductPageSimilar(extended, data.item_ids, texts, text_for_unknown=is_new)),
    }
    rows = [
        ["model, new products left out (before)", *_cells(without)],
        ["model, new products placed by text (with_items)", *_cells(placed)],
        *([f"model, new products placed, NEW_PRODUCT_BOOST {boost:g}",
           *_cells(placed_with(boost))] for boost in args.boosts),
        ["text-only nearest neighbour of the last product",
         *_cells(report(LastItemTextModel(texts)))],
        ["similar list of the last product, new products left out (before)",
         *_cells(product_page["before"])],
        ["similar list of the last product, new products placed (with_items)",
         *_cells(product_page["placed"])],
        ["similar list of the last product, placed; a new product's page by text",
         *_cells(product_page["placed, text for a new page"])],
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
        "shows (Recommender.similar_items, the cosine of the model's item vectors); a page of "
        "a product the model does not know ranks by text (the plugin's fallback). Before: new "
        "products are in no list; placed: they are in every list, and their own pages rank by "
        "their placed vectors (or by text, last row).",
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

    The cosine of the recommender's item vectors with the last product's (what
    ``Recommender.similar_items`` ranks by), over the products the recommender knows; a last
    product it does not know, or one in ``text_for_unknown``, is ranked by text instead.
    """

    def __init__(
        self, recommender: Recommender, item_ids: list[str], texts: np.ndarray,
        text_for_unknown: np.ndarray | None = None,
    ) -> None:
        position = {item: row for row, item in enumerate(recommender.item_ids)}
        ours = np.array([position.get(item, -1) for item in item_ids], dtype=np.int64)
        known = ours >= 0
        vectors = recommender.item_vectors()[ours[known]]
        self.vectors = np.zeros((len(item_ids) + 1, vectors.shape[1]), dtype=np.float32)
        self.vectors[1:][known] = vectors / np.maximum(
            np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.known = np.concatenate([[False], known])
        self.by_text = ~self.known if text_for_unknown is None else ~self.known | text_for_unknown
        self.texts = np.vstack([np.zeros((1, texts.shape[1]), np.float32), texts])

    def __call__(self, histories: list[np.ndarray], kinds: list[np.ndarray]) -> np.ndarray:
        last = np.array([history[-1] if len(history) else 0 for history in histories])
        scores = self.vectors[last] @ self.vectors.T
        by_text = self.by_text[last]
        scores[by_text] = self.texts[last[by_text]] @ self.texts.T
        scores[:, ~self.known] = -np.inf
        scores[np.arange(len(last)), last] = -np.inf  # a page never lists its own product
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
