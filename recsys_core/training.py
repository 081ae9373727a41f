"""Training loop: every position of every training sequence predicts its next item.

Early stopping on validation NDCG@10 with the shared evaluator, a progress callback for the
worker, a checkpoint after each epoch (one safetensors file with the trainer state as JSON
metadata, so no pickle is ever written or read) that `train` resumes from, cancellation through
`should_stop`, and a wall-clock budget.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from recsys_core.augment import Augmenter, make_augmenter
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import item_counts
from recsys_core.evaluation import evaluate
from recsys_core.model import SeqRecModel, autocast, score_histories

CHECKPOINT_FILE = "checkpoint.safetensors"
_BUCKET_BATCHES = 32  # batches per length-sorted bucket: little padding, still shuffled
_PROGRESS_EVERY_S = 2.0


class TrainingCancelled(Exception):
    """Raised when `should_stop()` returns True; the last epoch's checkpoint stays usable."""


class CheckpointError(Exception):
    """A checkpoint cannot be resumed (other configuration, or a damaged file)."""


@dataclass
class Progress:
    """One progress report; `fraction` in [0, 1] is the share of the epoch budget done."""

    phase: str
    epoch: int | None
    epochs: int | None
    loss: float | None
    metrics: dict[str, float] | None
    fraction: float


@dataclass
class TrainResult:
    model: SeqRecModel
    best_epoch: int
    history: list[dict[str, float]]
    train_seconds: float
    stopped: str  # "early_stopping", "epochs" or "time_budget"


class TrainingSplit(Protocol):
    """What training reads from a split (`LeaveOneOut`; validation may be empty)."""

    train: list[np.ndarray]
    train_kinds: list[np.ndarray]


ProgressFn = Callable[[Progress], None]


@dataclass
class _State:
    """Everything besides weights that a resumed run needs to continue bit-for-bit."""

    epoch: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    batch_rng: dict[str, Any] | None = None
    augment_rng: dict[str, Any] | None = None


def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def train(
    data: TrainingSplit,
    n_items: int,
    text_embeddings: np.ndarray | None,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    progress: ProgressFn | None = None,
    checkpoint_dir: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a SeqRecModel and return it with the weights of its best validation epoch.

    Without validation cases (no `valid_target`, or an empty one) it trains for all epochs and
    keeps the last weights.
    """
    if model_config.n_items != n_items:
        raise ValueError(f"model_config.n_items={model_config.n_items} but n_items={n_items}")
    if model_config.use_text and text_embeddings is None:
        raise ValueError("model_config.use_text is set but no text_embeddings were given")
    previous_threads = torch.get_num_threads()
    if train_config.num_threads:
        torch.set_num_threads(train_config.num_threads)
    try:
        return _Trainer(
            data, text_embeddings, model_config, train_config, progress, checkpoint_dir, should_stop
        ).run()
    finally:
        torch.set_num_threads(previous_threads)


class _Trainer:
    def __init__(
        self,
        data: TrainingSplit,
        text_embeddings: np.ndarray | None,
        model_config: ModelConfig,
        train_config: TrainConfig,
        progress: ProgressFn | None,
        checkpoint_dir: Path | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.config = train_config
        self.model_config = model_config
        self.report = progress or (lambda _progress: None)
        self.should_stop = should_stop or (lambda: False)
        self.checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
        self.device = resolve_device(train_config.device)

        torch.manual_seed(train_config.seed)
        self.model = SeqRecModel(
            model_config, text_embeddings if model_config.use_text else None
        ).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
        )
        self.train_items = [np.asarray(s, dtype=np.int64) for s in data.train]
        self.train_kinds = [np.asarray(k, dtype=np.int64) for k in data.train_kinds]
        self.n_examples = sum(1 for s in self.train_items if len(s) >= 2)
        if self.n_examples == 0:
            raise ValueError("no training sequence has two or more items: nothing to learn from")
        self.valid = validation_cases(data, train_config)
        counts = item_counts(self.train_items, model_config.n_items)
        self.model.set_item_counts(counts)
        self.sampler = (
            _NegativeSampler(counts, train_config.n_negatives, self.device)
            if train_config.uses_sampled_loss(model_config.n_items)
            else None
        )
        self.state = _State()
        self.best_weights: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- main loop
    def run(self) -> TrainResult:
        config = self.config
        self._emit("prepare", None, None, None, 0.0)
        augmenter = make_augmenter(
            config,
            n_items=self.model_config.n_items,
            model_config=self.model_config,
            text_embeddings=self.model.text_embeddings[1:].cpu().numpy()
            if self.model_config.use_text
            else None,
            device=self.device,
            progress=self.report,
            should_stop=self.should_stop,
        )
        if augmenter is not None:
            self._emit("augment", None, None, None, 0.0)
            augmenter.fit(self.train_items, train_kinds=self.train_kinds)
        batch_rng = np.random.default_rng(config.seed)
        augment_rng = np.random.default_rng([config.seed, 1])
        if self.checkpoint is not None and self.checkpoint.exists():
            self._load_checkpoint()
            assert self.state.batch_rng is not None and self.state.augment_rng is not None
            batch_rng.bit_generator.state = self.state.batch_rng
            augment_rng.bit_generator.state = self.state.augment_rng

        stopped = "epochs"
        started = time.monotonic() - self.state.elapsed
        first_epoch = self.state.epoch + 1
        if self.valid is not None and self.state.bad_epochs >= config.patience:
            stopped, first_epoch = "early_stopping", config.epochs + 1  # resumed a finished run
        for epoch in range(first_epoch, config.epochs + 1):
            loss, out_of_time = self._run_epoch(epoch, batch_rng, augment_rng, augmenter, started)
            record: dict[str, float] = {"epoch": epoch, "loss": loss}
            if self.valid is not None:
                self._emit("validate", epoch, loss, None, (epoch - 0.5) / config.epochs)
                metrics = self._validate()
                record.update({f"val_{name}": value for name, value in metrics.items()})
                metric = metrics["ndcg@10"]
            else:
                metric = float(epoch)  # no validation: the last epoch is the best one
            state = self.state
            state.elapsed = time.monotonic() - started
            record["seconds"] = round(state.elapsed, 3)
            state.history.append(record)
            if metric > state.best_metric:
                state.best_metric, state.best_epoch, state.bad_epochs = metric, epoch, 0
                self.best_weights = _clone_state(self.model)
            else:
                state.bad_epochs += 1
            state.epoch = epoch
            state.batch_rng = batch_rng.bit_generator.state
            state.augment_rng = augment_rng.bit_generator.state
            if self.checkpoint is not None:
                self._save_checkpoint()
            self._emit("train", epoch, loss, _val_metrics(record), epoch / config.epochs)
            if out_of_time:
                stopped = "time_budget"
                break
            if self.valid is not None and state.bad_epochs >= config.patience:
                stopped = "early_stopping"
                break

        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights, strict=False)
        self.model.eval()
        return TrainResult(
            model=self.model.cpu(),
            best_epoch=self.state.best_epoch,
            history=self.state.history,
            train_seconds=time.monotonic() - started,
            stopped=stopped,
        )

    def _run_epoch(
        self,
        epoch: int,
        batch_rng: np.random.Generator,
        augment_rng: np.random.Generator,
        augmenter: Augmenter | None,
        started: float,
    ) -> tuple[float, bool]:
        """One pass over the training sequences; returns (mean loss, time budget exhausted)."""
        config = self.config
        self.model.train()
        examples = _examples(
            self.train_items,
            self.train_kinds,
            augmenter,
            config.augmentation_prob,
            augment_rng,
            self.model_config.max_len,
        )
        batches = _length_bucketed_batches(examples, config.batch_size, batch_rng)
        total, count = 0.0, 0
        last_report = time.monotonic()
        out_of_time = False
        for number, batch in enumerate(batches, start=1):
            if self.should_stop():
                raise TrainingCancelled(f"training cancelled during epoch {epoch}")
            loss = self._step(batch, batch_rng)
            total += loss
            count += 1
            now = time.monotonic()
            if config.max_train_seconds is not None and now - started > config.max_train_seconds:
                out_of_time = True
                break
            if now - last_report >= _PROGRESS_EVERY_S:
                last_report = now
                fraction = (epoch - 1 + number / len(batches)) / config.epochs
                self._emit("train", epoch, total / count, None, fraction)
        return total / max(count, 1), out_of_time

    def _step(
        self, batch: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator
    ) -> float:
        items, kinds, targets = (torch.from_numpy(array).to(self.device) for array in batch)
        negatives = self.sampler.draw(rng) if self.sampler is not None else None
        with autocast(self.device, self.config.bf16):
            loss = _loss(self.model, items, kinds, targets, self.sampler, negatives)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def _validate(self) -> dict[str, float]:
        assert self.valid is not None
        histories, kinds, targets = self.valid
        self.model.eval()
        with torch.inference_mode(), autocast(self.device, self.config.bf16):
            table = self.model.item_vectors()

        def score_fn(
            batch_histories: list[np.ndarray], batch_kinds: list[np.ndarray]
        ) -> np.ndarray:
            scores = score_histories(
                self.model, table, batch_histories, batch_kinds, bf16=self.config.bf16
            )
            return scores.cpu().numpy()

        report = evaluate(
            score_fn,
            histories,
            kinds,
            targets,
            self.model_config.n_items,
            ks=(10,),
            batch_size=self.config.eval_batch_size,
        )
        return {name: float(value) for name, value in report.metrics.items()}

    def _emit(
        self,
        phase: str,
        epoch: int | None,
        loss: float | None,
        metrics: dict[str, float] | None,
        fraction: float,
    ) -> None:
        self.report(Progress(phase, epoch, self.config.epochs, loss, metrics, min(fraction, 1.0)))

    # ----------------------------------------------------------------- checkpoints
    def _save_checkpoint(self) -> None:
        assert self.checkpoint is not None
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_weights.items()})
        optimizer = self.optimizer.state_dict()
        for index, slots in optimizer["state"].items():
            for slot, value in slots.items():
                tensors[f"optim.{index}.{slot}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":  # dropout on the GPU draws from the CUDA generator
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        trainer_state = {
            "epoch": self.state.epoch,
            "best_metric": self.state.best_metric,
            "best_epoch": self.state.best_epoch,
            "bad_epochs": self.state.bad_epochs,
            "elapsed": self.state.elapsed,
            "history": self.state.history,
            "batch_rng": self.state.batch_rng,
            "augment_rng": self.state.augment_rng,
            "param_groups": optimizer["param_groups"],
            "model_config": self.model_config.to_dict(),
            "train_config": _resumable_fields(self.config),
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.checkpoint.with_suffix(".tmp")
        contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        save_file(contiguous, str(temporary), metadata={"trainer_state": json.dumps(trainer_state)})
        os.replace(temporary, self.checkpoint)

    def _load_checkpoint(self) -> None:
        assert self.checkpoint is not None
        try:
            with safe_open(str(self.checkpoint), framework="pt") as handle:
                saved = json.loads(handle.metadata()["trainer_state"])
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except Exception as error:  # safetensors raises several types for a damaged file
            raise CheckpointError(f"cannot read checkpoint {self.checkpoint}: {error}") from error
        if saved["model_config"] != self.model_config.to_dict():
            raise CheckpointError(
                f"checkpoint {self.checkpoint} was written for another model configuration"
            )
        if saved["train_config"] != _resumable_fields(self.config):
            raise CheckpointError(
                f"checkpoint {self.checkpoint} was written with other training settings"
            )
        self.model.load_state_dict(_section(tensors, "model."))
        best = _section(tensors, "best.")
        self.best_weights = best or None
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in _section(tensors, "optim.").items():
            index, slot = name.split(".", 1)
            slots.setdefault(int(index), {})[slot] = value
        self.optimizer.load_state_dict({"state": slots, "param_groups": saved["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = _State(
            epoch=saved["epoch"],
            best_metric=saved["best_metric"],
            best_epoch=saved["best_epoch"],
            bad_epochs=saved["bad_epochs"],
            elapsed=saved["elapsed"],
            history=saved["history"],
            batch_rng=saved["batch_rng"],
            augment_rng=saved["augment_rng"],
        )


# --------------------------------------------------------------------- loss


def _loss(
    model: SeqRecModel,
    items: torch.Tensor,
    kinds: torch.Tensor,
    targets: torch.Tensor,
    sampler: _NegativeSampler | None,
    negatives: torch.Tensor | None,
) -> torch.Tensor:
    """Cross-entropy of the next item at every position that has a target.

    Full softmax scores the whole catalogue; sampled softmax scores the target against shared
    negatives drawn by popularity, with logQ correction so the estimate stays unbiased towards
    popular items, and with accidental hits (negative == target) masked out.
    """
    mask = targets > 0
    wanted = targets[mask]
    latest = items[mask]  # the item each predicting position has just seen
    if sampler is None or negatives is None:
        table = model.item_vectors()
        states = model.sequence_states(table[items], kinds)[mask]
        logits = states @ table[1:].t()
        match = model.text_match(latest)
        if match is not None:
            logits = logits + match[:, 1:]
        return F.cross_entropy(logits.float(), wanted - 1)
    states = model.sequence_states(model.item_vectors(items), kinds)[mask]
    positive = (states * model.item_vectors(wanted)).sum(-1, keepdim=True)
    negative = states @ model.item_vectors(negatives).t()
    logits = torch.cat([positive, negative], dim=1).float()
    if model.text_match_weight is not None:
        positive_match = model.text_match(latest, wanted.unsqueeze(1))
        negative_match = model.text_match(latest, negatives)
        assert positive_match is not None and negative_match is not None
        logits = logits + torch.cat([positive_match, negative_match], dim=1)
    correction = torch.cat(
        [sampler.log_q[wanted].unsqueeze(1), sampler.log_q[negatives].expand(len(wanted), -1)],
        dim=1,
    )
    logits = logits - correction
    hits = negatives.unsqueeze(0) == wanted.unsqueeze(1)
    logits[:, 1:] = logits[:, 1:].masked_fill(hits, -1e9)
    return F.cross_entropy(logits, torch.zeros_like(wanted))


class _NegativeSampler:
    """Negatives from smoothed popularity, (count + 1) ** 0.75, shared by a whole batch."""

    def __init__(self, counts: np.ndarray, n_negatives: int, device: torch.device) -> None:
        weights = (counts[1:].astype(np.float64) + 1.0) ** 0.75
        self.probabilities = weights / weights.sum()
        self.n_negatives = n_negatives
        # log of the expected number of draws of each item: the logQ correction term.
        log_q = np.log(self.probabilities * n_negatives)
        self.log_q = torch.from_numpy(np.concatenate([[0.0], log_q])).float().to(device)
        self.device = device

    def draw(self, rng: np.random.Generator) -> torch.Tensor:
        drawn = rng.choice(len(self.probabilities), size=self.n_negatives, p=self.probabilities)
        return torch.from_numpy(drawn + 1).to(self.device)


# --------------------------------------------------------------------- batches


def _examples(
    sequences: Sequence[np.ndarray],
    kinds: Sequence[np.ndarray],
    augmenter: Augmenter | None,
    probability: float,
    rng: np.random.Generator,
    max_len: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(inputs, input kinds, targets) per sequence: position t predicts item t + 1.

    Targets are 0 (ignored) where the next item is context only (masked or generated).
    Only the last `max_len` transitions of a long sequence are kept.
    """
    examples = []
    for items, item_kinds in zip(sequences, kinds, strict=True):
        context = np.zeros(len(items), dtype=bool)
        if augmenter is not None and probability > 0 and rng.random() < probability:
            items, item_kinds, context = augmenter.augment(items, item_kinds, rng)
        if len(items) < 2:
            continue
        items = items[-(max_len + 1) :]
        item_kinds = item_kinds[-(max_len + 1) :]
        context = context[-(max_len + 1) :]
        targets = np.where(context[1:], 0, items[1:])
        examples.append((items[:-1], item_kinds[:-1], targets))
    return examples


def _length_bucketed_batches(
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    batch_size: int,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Shuffle, sort by length within buckets, pad right, shuffle the batches.

    Sorting inside buckets of a few dozen batches cuts padding (most histories are short)
    while each epoch still sees a fresh mix of sequences per batch.
    """
    order = rng.permutation(len(examples))
    bucket = batch_size * _BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: len(examples[i][0]))
        for offset in range(0, len(chunk), batch_size):
            batches.append(_pad([examples[i] for i in chunk[offset : offset + batch_size]]))
    return [batches[i] for i in rng.permutation(len(batches))]


def _pad(
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = max(len(example[0]) for example in examples)
    arrays = [np.zeros((len(examples), width), dtype=np.int64) for _ in range(3)]
    for row, example in enumerate(examples):
        for array, values in zip(arrays, example, strict=True):
            array[row, : len(values)] = values
    return arrays[0], arrays[1], arrays[2]


# --------------------------------------------------------------------- helpers


def validation_cases(
    data: TrainingSplit, config: TrainConfig
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray] | None:
    """The validation cases scored after each epoch (at most max_eval_users), length-sorted."""
    targets = getattr(data, "valid_target", None)
    if targets is None or len(targets) == 0:
        return None
    histories = list(data.valid_history)  # type: ignore[attr-defined]
    kinds = list(data.valid_kinds)  # type: ignore[attr-defined]
    targets = np.asarray(targets, dtype=np.int64)
    if config.max_eval_users is not None and len(targets) > config.max_eval_users:
        rng = np.random.default_rng(config.seed)
        chosen = np.sort(rng.choice(len(targets), config.max_eval_users, replace=False))
        histories = [histories[i] for i in chosen]
        kinds = [kinds[i] for i in chosen]
        targets = targets[chosen]
    return length_sorted(histories, kinds, targets)


def length_sorted(
    histories: Sequence[np.ndarray], kinds: Sequence[np.ndarray], targets: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Evaluation cases ordered by history length: batches of similar lengths pad little.

    Metrics are averages over cases, so the order changes nothing but the time (several
    times less on data where most histories are short and a few are long).
    """
    order = np.argsort([len(history) for history in histories], kind="stable")
    return [histories[i] for i in order], [kinds[i] for i in order], np.asarray(targets)[order]


def _resumable_fields(config: TrainConfig) -> dict[str, Any]:
    """Training settings a resumed run must share (the epoch budget and limits may change)."""
    values = config.to_dict()
    for free in ("epochs", "max_train_seconds", "device", "num_threads", "patience",
                 "text_prior_grid"):
        values.pop(free)
    return values


def _clone_state(model: SeqRecModel) -> dict[str, torch.Tensor]:
    """A copy of the trainable weights (the frozen side vectors never change: not copied)."""
    return {name: tensor.detach().clone() for name, tensor in model.named_parameters()}


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}


def _val_metrics(record: dict[str, float]) -> dict[str, float] | None:
    metrics = {name[4:]: value for name, value in record.items() if name.startswith("val_")}
    return metrics or None
