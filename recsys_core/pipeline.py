"""One call from interaction data to a saved, evaluated model version.

The shop's Celery job and the quality benchmarks both call `train_version`, so what the
benchmarks measure is what the shop runs: encode item texts (cached), split leave-one-out,
train with early stopping on validation, evaluate the model, the baselines and any rival
(the active version) on the test split with the one evaluator, save the version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from recsys_core.artifacts import load_version, save_version
from recsys_core.baselines import ItemKNN, PopularityModel
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import LeaveOneOut, SequenceData, item_counts, leave_one_out
from recsys_core.evaluation import EvalReport, ScoreFn, evaluate
from recsys_core.inference import Recommender
from recsys_core.model import SeqRecModel
from recsys_core.text import TextEncoder
from recsys_core.training import Progress, ProgressFn, length_sorted, train, validation_cases

# Share of max_train_seconds the early-stopping run may use when a refit follows.
_SEARCH_SHARE = 0.55
# Share of the overall progress bar each phase takes (training dominates).
_EMBED_END, _SEARCH_END, _TRAIN_END, _EVALUATE_END = 0.10, 0.55, 0.90, 0.97


@dataclass
class PipelineResult:
    recommender: Recommender
    metrics: dict[str, dict[str, Any]]
    """Per model ("model", "popularity", "itemknn", rivals): the test metrics (ndcg@10, ...)
    plus "slices" and "n_cases"."""
    manifest: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int
    train_seconds: float


def train_version(
    data: SequenceData,
    *,
    model_config_overrides: Mapping[str, Any] | None = None,
    train_config: TrainConfig,
    text_encoder: TextEncoder | None,
    output_dir: Path,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    baseline_scores: bool = True,
    compare_with: Mapping[str, Recommender] | None = None,
    checkpoint_dir: Path | None = None,
    refit: bool = True,
) -> PipelineResult:
    """Train, evaluate and save one model version into `output_dir` (created atomically).

    The model uses text when the data has item texts and an encoder is given, unless
    `model_config_overrides` says `use_text=False`. `compare_with` maps names to other
    recommenders (the active version) evaluated on the same test cases.

    With `refit` (the default) the epoch count found by early stopping is used to train a
    fresh model on the training events plus each shopper's validation event, and that model
    is evaluated and saved: the most recent events are the most telling (on Amazon Beauty
    NDCG@10 rises by a fifth), and the test event still never reaches training. Both phases
    share `max_train_seconds`, the early-stopping run taking at most 55% of it.
    """
    report = progress or (lambda _progress: None)
    overrides = dict(model_config_overrides or {})
    if "n_items" in overrides:
        raise ValueError("n_items comes from the data; do not override it")

    texts = _encode_texts(data, text_encoder, report)
    use_text = bool(overrides.pop("use_text", texts is not None))
    if use_text and texts is None:
        raise ValueError("use_text=True needs item texts in the data and a text_encoder")
    split = leave_one_out(data)
    if len(split.test_target) == 0:
        raise ValueError(
            "not enough data to evaluate: no shopper has 3 or more events "
            "(one for training, one for validation, one for testing)"
        )
    train_counts = item_counts(split.train, data.n_items)
    model_config = ModelConfig(
        n_items=data.n_items,
        use_text=use_text,
        text_dim=texts.shape[1] if texts is not None else ModelConfig.text_dim,
        default_kind=_commonest_kind(split.train_kinds),
        **overrides,
    )

    search_end = _SEARCH_END if refit else _TRAIN_END
    budget = train_config.max_train_seconds
    search_config = train_config
    if refit and budget is not None:
        # The refit runs at most as many epochs, without validation: the rest always fits.
        search_config = replace(train_config, max_train_seconds=_SEARCH_SHARE * budget)
    result = train(
        split,
        data.n_items,
        texts if use_text else None,
        model_config,
        search_config,
        progress=_rescaled(report, _EMBED_END, search_end),
        checkpoint_dir=_subdirectory(checkpoint_dir, "search"),
        should_stop=should_stop,
    )
    model, history, train_seconds = result.model, list(result.history), result.train_seconds
    model_config = calibrate_text_prior(model, data.item_ids, split, train_counts, train_config)
    remaining = None if budget is None else budget - train_seconds
    refit_done = False
    if refit and (remaining is None or remaining > 0):
        final = train(
            _validation_in_training(data, split),
            data.n_items,
            texts if use_text else None,
            model_config,
            replace(train_config, epochs=result.best_epoch, max_train_seconds=remaining),
            progress=_renamed(_rescaled(report, search_end, _TRAIN_END), "refit"),
            checkpoint_dir=_subdirectory(checkpoint_dir, "refit"),
            should_stop=should_stop,
        )
        model, refit_done = final.model, True
        history += [
            {**record, "refit": 1.0, "seconds": round(train_seconds + record["seconds"], 3)}
            for record in final.history
        ]
        train_seconds += final.train_seconds

    report(Progress("evaluate", None, None, None, None, _TRAIN_END))
    all_counts = item_counts(data.sequences, data.n_items)
    text_model_id = text_encoder.model_id if texts is not None and text_encoder else None
    trained = Recommender(
        model,
        data.item_ids,
        text_model_id=text_model_id,
        text_embeddings=None if use_text else texts,
        item_counts=all_counts,
    )
    rivals: dict[str, ScoreFn] = {"model": trained.as_score_fn(data.item_ids)}
    if baseline_scores:
        rivals["popularity"] = PopularityModel().fit(split.train, data.n_items)
        rivals["itemknn"] = ItemKNN().fit(split.train, data.n_items)
    for name, rival in (compare_with or {}).items():
        if name in rivals:
            raise ValueError(f"compare_with name {name!r} clashes with a built-in model")
        rivals[name] = rival.as_score_fn(data.item_ids)
    histories, kinds, targets = length_sorted(
        split.test_history, split.test_kinds, split.test_target
    )
    metrics = {
        name: _as_dict(
            evaluate(
                score_fn,
                histories,
                kinds,
                targets,
                data.n_items,
                batch_size=train_config.eval_batch_size,
                train_item_counts=train_counts,
            )
        )
        for name, score_fn in rivals.items()
    }

    report(Progress("save", None, None, None, None, _EVALUATE_END))
    manifest = save_version(
        Path(output_dir),
        model,
        model_config,
        train_config,
        data.item_ids,
        metrics,
        text_model_id,
        texts,
        extra={
            "best_epoch": result.best_epoch,
            "stopped": result.stopped,
            "refit_with_validation": refit_done,
            "train_seconds": round(train_seconds, 3),
            "history": history,
            "data": {
                "users": len(data.users),
                "items": data.n_items,
                "interactions": data.n_interactions,
                "test_cases": int(len(split.test_target)),
            },
            "split": "leave_one_out",
        },
        item_counts=all_counts,
    )
    recommender = load_version(Path(output_dir))
    report(Progress("done", result.best_epoch, None, None, metrics["model"], 1.0))
    return PipelineResult(
        recommender=recommender,
        metrics=metrics,
        manifest=manifest,
        history=history,
        best_epoch=result.best_epoch,
        train_seconds=train_seconds,
    )


def calibrate_text_prior(
    model: SeqRecModel,
    item_ids: list[str],
    split: LeaveOneOut,
    train_counts: np.ndarray,
    train_config: TrainConfig,
) -> ModelConfig:
    """Set the model's text prior to the weight of `text_prior_grid` that scores best on the
    validation split (ties: the smaller weight) and return its config."""
    cases = validation_cases(split, train_config)
    grid = sorted(set(train_config.text_prior_grid))
    if not model.config.uses_text_match or not grid or cases is None:
        return model.config
    histories, kinds, targets = cases
    scored: list[tuple[float, float]] = []
    for weight in grid:
        model.config = replace(model.config, text_prior=weight)
        recommender = Recommender(model, item_ids, item_counts=train_counts)
        report = evaluate(recommender.as_score_fn(item_ids), histories, kinds, targets,
                          len(item_ids), batch_size=train_config.eval_batch_size)
        scored.append((report.metrics["ndcg@10"], -weight))
    model.config = replace(model.config, text_prior=-max(scored)[1])
    return model.config


def _encode_texts(
    data: SequenceData, encoder: TextEncoder | None, report: ProgressFn
) -> np.ndarray | None:
    if encoder is None or data.item_texts is None:
        return None

    def embedded(done: int, total: int) -> None:
        fraction = _EMBED_END * done / max(total, 1)
        report(Progress("embed", None, None, None, None, fraction))

    return encoder.encode(data.item_texts, progress=embedded)


def _rescaled(report: ProgressFn, start: float, end: float) -> ProgressFn:
    """Training reports 0..1 for itself; the pipeline's bar gives it [start, end]."""

    def forward(progress: Progress) -> None:
        report(replace(progress, fraction=start + (end - start) * progress.fraction))

    return forward


def _renamed(report: ProgressFn, phase: str) -> ProgressFn:
    """Reports of the refit run carry their own phase name, so the admin can tell them apart."""

    def forward(progress: Progress) -> None:
        report(replace(progress, phase=phase))

    return forward


def _validation_in_training(data: SequenceData, split: LeaveOneOut) -> LeaveOneOut:
    """Every event but each shopper's test event is training data; nothing to validate on."""
    none = np.zeros(0, dtype=np.int64)
    return replace(
        split,
        train=[s[:-1] if len(s) >= 3 else s for s in data.sequences],
        train_kinds=[k[:-1] if len(k) >= 3 else k for k in data.kinds],
        valid_history=[],
        valid_kinds=[],
        valid_target=none,
    )


def _subdirectory(directory: Path | None, name: str) -> Path | None:
    return None if directory is None else Path(directory) / name


def _commonest_kind(kinds: list[np.ndarray]) -> int:
    """Kind used for histories given without kinds: the one the model saw most in training."""
    counts = np.bincount(np.concatenate([np.asarray(k, dtype=np.int64) for k in kinds]))
    counts[0] = 0
    return int(counts.argmax()) if counts.sum() else ModelConfig.default_kind


def _as_dict(report: EvalReport) -> dict[str, Any]:
    return {**report.metrics, "slices": report.slices, "n_cases": report.n_cases}
