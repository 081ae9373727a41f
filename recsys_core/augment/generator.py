"""Reverse-generator augmentation ("generator"): plausible earlier items for short histories.

A small causal Transformer (the recommender's own `SeqRecModel`, so items are the same ID + text
vectors) learns by maximum likelihood on training sequences read backwards which item a shopper
had *before* the ones we know: the pseudo-prior items of ASReP (Liu et al., SIGIR 2021). After
`fit`, every training sequence of at most `short_max` items gets `n_generated` earlier items,
drawn once and cached, so that training epochs pay nothing for them. Generated items are context
only: the recommender never learns to predict them, but the first real item becomes a target.

This module is arm A3 of the augmentation benchmark (the generator without adversarial loss);
`recsys_core.augment.gan` ("gan") subclasses it and fine-tunes the generator against a
discriminator before the prefixes are drawn.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recsys_core.augment import register_augmenter
from recsys_core.augment.discriminator import Discriminator, PairSampler, fit_discriminator
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import item_counts
from recsys_core.evaluation import HEAD_SHARE
from recsys_core.model import SeqRecModel, autocast
from recsys_core.training import Progress, TrainingCancelled

# Cap on logits per pre-training batch (rows x catalogue): bounds memory on large catalogues.
_MAX_LOGITS_PER_BATCH = 2**25


@dataclass(frozen=True)
class GeneratorSettings:
    """Sizes and budgets of the generator (and, for "gan", of its adversarial phase).

    Chosen a priori and shared by every benchmark arm; none of them was tuned on test data.
    """

    short_max: int = 3  # sequences of at most this many items are augmented (M)
    n_generated: int = 4  # earlier items generated per short sequence (k)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    batch_size: int = 128
    lr: float = 2e-3
    pretrain_epochs: int = 10
    patience: int = 2  # pre-training stops when held-out likelihood stalls this many epochs
    held_out_share: float = 0.1  # training users kept out of generator/discriminator training
    temperature: float = 1.0  # sampling temperature of the generated items
    top_k: int = 50  # items are drawn among the generator's top_k guesses
    pair_batch_size: int = 128  # real/generated pairs per discriminator or adversarial step
    # Realism probe: a fresh discriminator trained this many steps against the final generator,
    # then scored on held-out users (0 = skip). Lets "generator" and "gan" be compared fairly.
    probe_steps: int = 100
    # Adversarial phase ("gan" only).
    adversarial_steps: int = 100
    discriminator_warmup_steps: int = 30
    generator_lr: float = 3e-4
    discriminator_lr: float = 1e-3
    mle_weight: float = 1.0  # maximum-likelihood anchor beside the adversarial loss
    gumbel_tau: float = 1.0

    def __post_init__(self) -> None:
        if self.short_max < 1 or self.n_generated < 1:
            raise ValueError("short_max and n_generated must be >= 1")
        if not 0.0 < self.held_out_share < 1.0:
            raise ValueError("held_out_share must be in (0, 1)")
        if self.temperature <= 0 or self.gumbel_tau <= 0:
            raise ValueError("temperature and gumbel_tau must be > 0")
        if min(self.pretrain_epochs, self.batch_size, self.patience, self.top_k) < 1:
            raise ValueError("pretrain_epochs, batch_size, patience and top_k must be >= 1")
        if self.pair_batch_size < 1:
            raise ValueError("pair_batch_size must be >= 1")
        if min(self.probe_steps, self.adversarial_steps, self.discriminator_warmup_steps) < 0:
            raise ValueError("step counts must be >= 0")

    @property
    def window(self) -> int:
        """Longest sequence the generator reads: a short history plus its generated prefix."""
        return self.short_max + self.n_generated


ProgressFn = Callable[[Progress], None]


class ReverseGenerator:
    """A SeqRecModel read backwards, with batched sampling of earlier items.

    Only items seen in the training sequences can be generated (`allowed`): an item known only
    from validation or test, or never bought, is never emitted.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        settings: GeneratorSettings,
        text_embeddings: np.ndarray | None,
        allowed: np.ndarray,
        device: torch.device,
    ) -> None:
        config = replace(
            model_config,
            d_model=settings.d_model,
            n_layers=settings.n_layers,
            n_heads=settings.n_heads,
            max_len=settings.window,
            dropout=settings.dropout,
            id_dropout=0.0,
        )
        self.model = SeqRecModel(config, text_embeddings if config.use_text else None).to(device)
        self.settings = settings
        self.device = device
        # Column i stands for item i + 1 (logits skip the padding row).
        self.banned_base = torch.from_numpy(~allowed[1:]).to(device)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def nll(self, windows: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """Mean next-item cross-entropy over reversed windows [B, L] (0 = padding)."""
        table = self.model.item_vectors()
        states = self.model.sequence_states(table[windows[:, :-1]], kinds[:, :-1])
        targets = windows[:, 1:]
        mask = targets > 0
        logits = states[mask] @ table[1:].t()
        return F.cross_entropy(logits.float(), targets[mask] - 1)

    def rollout(
        self,
        seeds: torch.Tensor,
        seed_kinds: torch.Tensor,
        rng: torch.Generator,
        *,
        straight_through_tau: float | None = None,
    ) -> tuple[torch.Tensor, list[SoftDraw]]:
        """Generate `n_generated` earlier items for each row of `seeds` [B, m] (chronological).

        Each item is drawn from the generator's `top_k` most likely items (as language models
        sample: the long tail of implausible items is cut, and the noise costs k, not the
        catalogue). Items in the seed or already drawn are never drawn again.

        Returns (items [B, n_generated] in chronological order, 0 where nothing was left to
        draw) and, with `straight_through_tau`, one `SoftDraw` per item (chronological): the
        straight-through Gumbel-softmax weights through which an adversarial loss reaches the
        generator.
        """
        settings = self.settings
        table = self.model.item_vectors()
        reversed_seeds = seeds.flip(1)
        inputs = table[reversed_seeds]
        kinds = seed_kinds.flip(1)
        banned = self.banned_base.unsqueeze(0).repeat(len(seeds), 1)
        real = reversed_seeds > 0
        rows = torch.arange(len(seeds), device=seeds.device).unsqueeze(1).expand_as(reversed_seeds)
        banned[rows[real], reversed_seeds[real] - 1] = True
        default_kind = torch.full_like(kinds[:, :1], self.config.default_kind)
        top_k = min(settings.top_k, self.config.n_items)
        items, draws = [], []
        for _ in range(settings.n_generated):
            states = self.model.sequence_states(inputs, kinds)[:, -1]
            logits = (states @ table[1:].t()).float() / settings.temperature
            top_logits, top_columns = logits.masked_fill(banned, -torch.inf).topk(top_k, dim=1)
            # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits).
            uniform = torch.rand(top_logits.shape, generator=rng, device=top_logits.device)
            perturbed = top_logits - torch.log(-torch.log(uniform))
            best, pick = perturbed.max(dim=1)
            drawn = torch.isfinite(best)
            column = top_columns.gather(1, pick.unsqueeze(1)).squeeze(1)
            if straight_through_tau is None:
                vector = table[column + 1]
            else:
                # A row with nothing left to draw would make softmax NaN: give it zero weight.
                finite = perturbed.masked_fill(~drawn.unsqueeze(1), 0.0)
                soft = torch.softmax(finite / straight_through_tau, dim=1)
                hard = F.one_hot(pick, top_k).to(soft.dtype)
                weights = (hard - soft.detach() + soft) * drawn.unsqueeze(1).to(soft.dtype)
                draw = SoftDraw(weights, top_columns + 1)
                draws.append(draw)
                vector = draw.vectors(table)
            items.append(torch.where(drawn, column + 1, torch.zeros_like(column)))
            banned = banned.scatter(1, column.unsqueeze(1), True)
            inputs = torch.cat([inputs, vector.unsqueeze(1)], dim=1)
            kinds = torch.cat([kinds, default_kind], dim=1)
        return torch.stack(items[::-1], dim=1), draws[::-1]


@dataclass
class SoftDraw:
    """One straight-through draw: one-hot forward, softmax backward, over candidate items."""

    weights: torch.Tensor  # [B, top_k]
    candidates: torch.Tensor  # [B, top_k] item indices

    def vectors(self, table: torch.Tensor) -> torch.Tensor:
        """The drawn items' vectors [B, d] from any item table, differentiable in `weights`."""
        return torch.einsum("bk,bkd->bd", self.weights.to(table.dtype), table[self.candidates])


@register_augmenter("generator")
class GeneratorAugmenter:
    """Prepends cached generated earlier items to short training sequences (arm A3)."""

    phase_prefix = "augmentation"

    def __init__(
        self,
        *,
        train_config: TrainConfig,
        n_items: int,
        model_config: ModelConfig,
        text_embeddings: np.ndarray | None = None,
        device: torch.device | str = "cpu",
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        settings: GeneratorSettings | None = None,
        **_context: Any,
    ) -> None:
        if model_config.n_items != n_items:
            raise ValueError(f"model_config.n_items={model_config.n_items} but n_items={n_items}")
        self.settings = settings or GeneratorSettings()
        self.model_config = model_config
        self.text_embeddings = text_embeddings
        self.device = torch.device(device)
        self.seed = train_config.seed
        self.bf16 = train_config.bf16
        self.progress = progress or (lambda _progress: None)
        self.should_stop = should_stop or (lambda: False)
        self.prefixes: dict[bytes, np.ndarray] = {}
        self.report: dict[str, float] = {}
        self.generator: ReverseGenerator | None = None

    # ----------------------------------------------------------------- Augmenter protocol
    def fit(self, train_sequences: Sequence[np.ndarray], **context: Any) -> None:
        """Train the generator on `train_sequences` only, then draw every short sequence's prefix.

        Runs under its own seeded torch RNG and restores the caller's afterwards, so switching
        augmentation on does not change the recommender's initialisation or dropout draws.
        """
        sequences = [np.asarray(s, dtype=np.int64) for s in train_sequences]
        kinds = context.get("train_kinds")
        kinds = (
            [np.asarray(k, dtype=np.int64) for k in kinds]
            if kinds is not None
            else [np.full(len(s), self.model_config.default_kind) for s in sequences]
        )
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        started = time.monotonic()
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            self._fit(sequences, kinds, started)

    def augment(
        self, items: np.ndarray, kinds: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sequence with its cached generated prefix (context only), or unchanged."""
        prefix = self.prefixes.get(_key(items)) if len(items) <= self.settings.short_max else None
        if prefix is None or not len(prefix):
            return items, kinds, np.zeros(len(items), dtype=bool)
        prefix_kinds = np.full(len(prefix), self.model_config.default_kind, dtype=kinds.dtype)
        context = np.zeros(len(prefix) + len(items), dtype=bool)
        context[: len(prefix)] = True
        return np.concatenate([prefix, items]), np.concatenate([prefix_kinds, kinds]), context

    # ----------------------------------------------------------------- fitting
    def _fit(self, sequences: list[np.ndarray], kinds: list[np.ndarray], started: float) -> None:
        settings = self.settings
        n_items = self.model_config.n_items
        rng = np.random.default_rng([self.seed, 7])
        torch_rng = torch.Generator(device=self.device).manual_seed(self.seed)
        counts = item_counts(sequences, n_items)
        allowed = counts > 0
        allowed[0] = False
        held_out = rng.random(len(sequences)) < settings.held_out_share
        if not any(len(s) >= 2 for s, out in zip(sequences, held_out, strict=True) if not out):
            held_out[:] = False  # too little data to hold any out: train on all of it
        train_ids = np.flatnonzero(~held_out)
        held_ids = np.flatnonzero(held_out)
        self.generator = ReverseGenerator(
            self.model_config, settings, self.text_embeddings, allowed, self.device
        )
        pairs = PairSampler(sequences, kinds, train_ids, held_ids, settings, rng)

        phase_started = time.monotonic()
        self._pretrain(sequences, kinds, train_ids, held_ids, rng)
        self.report["pretrain_s"] = time.monotonic() - phase_started

        phase_started = time.monotonic()
        self._fine_tune(pairs, sequences, kinds, train_ids, rng, torch_rng)
        self.report["adversarial_s"] = time.monotonic() - phase_started

        phase_started = time.monotonic()
        if settings.probe_steps and pairs.usable:
            self._emit("realism probe", None, None)
            self.report["probe_disc_acc_heldout"] = fit_discriminator(
                self._new_discriminator(),
                self.generator,
                pairs,
                settings.probe_steps,
                rng,
                torch_rng,
                self._check_stop,
                lr=settings.discriminator_lr,
            )
        self.report["probe_s"] = time.monotonic() - phase_started

        phase_started = time.monotonic()
        self._emit("generating prefixes", None, None)
        self._generate_prefixes(sequences, kinds, torch_rng)
        self.report["generate_s"] = time.monotonic() - phase_started

        self.report.update(self._popularity_profile(sequences, counts))
        self.report["augmented_sequences"] = float(len(self.prefixes))
        self.report["generator_params"] = float(_n_parameters(self.generator.model))
        self.report["fit_s"] = time.monotonic() - started
        self.report["peak_rss_mb"] = _peak_rss_mb()
        if self.device.type == "cuda":
            self.report["cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._emit("done", None, None, metrics=dict(self.report))

    def _pretrain(
        self,
        sequences: list[np.ndarray],
        kinds: list[np.ndarray],
        train_ids: np.ndarray,
        held_ids: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Maximum likelihood on reversed windows; early stopping on held-out users' likelihood."""
        assert self.generator is not None
        settings = self.settings
        model = self.generator.model
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
        batch_size = self._mle_batch_size()
        held = [i for i in held_ids if len(sequences[i]) >= 2]
        window = settings.window
        held_batches = reversed_window_batches(sequences, kinds, held, batch_size, window, rng)
        best, best_state, bad = np.inf, None, 0
        for epoch in range(1, settings.pretrain_epochs + 1):
            model.train()
            usable = [i for i in rng.permutation(train_ids) if len(sequences[i]) >= 2]
            total = 0.0
            batches = reversed_window_batches(sequences, kinds, usable, batch_size, window, rng)
            for windows, window_kinds in batches:
                self._check_stop()
                with autocast(self.device, self.bf16):
                    loss = self.generator.nll(windows.to(self.device), window_kinds.to(self.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                total += float(loss.detach())
            held_nll = self._held_out_nll(held_batches) if held_batches else total / len(batches)
            self._emit(
                "generator pre-training", epoch, held_nll, total_epochs=settings.pretrain_epochs
            )
            if held_nll < best - 1e-4:
                best, bad = held_nll, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= settings.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        self.report["pretrain_epochs"] = float(epoch)
        self.report["generator_heldout_nll"] = float(best)

    def _mle_batch_size(self) -> int:
        """Windows per likelihood batch: fewer on big catalogues, whose logits take more memory."""
        n_rows = _MAX_LOGITS_PER_BATCH // (self.model_config.n_items * self.settings.window)
        return max(8, min(self.settings.batch_size, n_rows))

    @torch.no_grad()
    def _held_out_nll(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        assert self.generator is not None
        self.generator.model.eval()
        losses = []
        for windows, window_kinds in batches:
            with autocast(self.device, self.bf16):
                loss = self.generator.nll(windows.to(self.device), window_kinds.to(self.device))
            losses.append(float(loss) * len(windows))
        return sum(losses) / sum(len(windows) for windows, _ in batches)

    def _fine_tune(
        self,
        pairs: PairSampler,
        sequences: list[np.ndarray],
        kinds: list[np.ndarray],
        train_ids: np.ndarray,
        rng: np.random.Generator,
        torch_rng: torch.Generator,
    ) -> None:
        """No adversarial phase for the maximum-likelihood generator ("gan" overrides this)."""

    @torch.no_grad()
    def _generate_prefixes(
        self, sequences: list[np.ndarray], kinds: list[np.ndarray], torch_rng: torch.Generator
    ) -> None:
        """One generated prefix per distinct short sequence, batched by sequence length."""
        assert self.generator is not None
        self.generator.model.eval()
        by_length: dict[int, dict[bytes, tuple[np.ndarray, np.ndarray]]] = {}
        for items, item_kinds in zip(sequences, kinds, strict=True):
            if 1 <= len(items) <= self.settings.short_max:
                by_length.setdefault(len(items), {})[_key(items)] = (items, item_kinds)
        batch_size = self.settings.batch_size
        for length in sorted(by_length):
            entries = list(by_length[length].items())
            for start in range(0, len(entries), batch_size):
                self._check_stop()
                chunk = entries[start : start + batch_size]
                seeds = torch.from_numpy(np.stack([items for _, (items, _) in chunk]))
                seed_kinds = torch.from_numpy(np.stack([kinds for _, (_, kinds) in chunk]))
                with autocast(self.device, self.bf16):
                    generated, _ = self.generator.rollout(
                        seeds.to(self.device), seed_kinds.to(self.device), torch_rng
                    )
                for (key, _), row in zip(chunk, generated.cpu().numpy(), strict=True):
                    self.prefixes[key] = row[row > 0]

    # ----------------------------------------------------------------- helpers
    def _new_discriminator(self) -> Discriminator:
        assert self.generator is not None
        return Discriminator(
            self.generator.config,
            self.generator.model.text_embeddings if self.generator.config.use_text else None,
        ).to(self.device)

    def _popularity_profile(
        self, sequences: list[np.ndarray], counts: np.ndarray
    ) -> dict[str, float]:
        """Popularity of generated items next to real ones (a GAN can collapse onto bestsellers)."""
        real = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int64)
        generated = (
            np.concatenate(list(self.prefixes.values())) if self.prefixes else np.zeros(0, np.int64)
        )
        n_head = int(np.ceil(HEAD_SHARE * (len(counts) - 1)))
        head = np.zeros(len(counts), dtype=bool)
        head[np.argsort(-counts[1:], kind="stable")[:n_head] + 1] = True
        profile = {
            "real_head_share": float(head[real].mean()) if len(real) else 0.0,
            "real_mean_log_count": float(np.log1p(counts[real]).mean()) if len(real) else 0.0,
            "real_distinct_items": float(len(np.unique(real))),
        }
        if len(generated):
            profile.update(
                generated_head_share=float(head[generated].mean()),
                generated_mean_log_count=float(np.log1p(counts[generated]).mean()),
                generated_distinct_items=float(len(np.unique(generated))),
                generated_items=float(len(generated)),
            )
        return profile

    def _check_stop(self) -> None:
        if self.should_stop():
            raise TrainingCancelled("training cancelled during augmentation")

    def _emit(
        self,
        phase: str,
        step: int | None,
        loss: float | None,
        *,
        total_epochs: int | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        self.progress(
            Progress(f"{self.phase_prefix}: {phase}", step, total_epochs, loss, metrics, 0.0)
        )


# --------------------------------------------------------------------- module helpers


def _key(items: np.ndarray) -> bytes:
    return np.asarray(items, dtype=np.int64).tobytes()


def reversed_window_batches(
    sequences: list[np.ndarray],
    kinds: list[np.ndarray],
    ids: Sequence[int],
    batch_size: int,
    window: int,
    rng: np.random.Generator,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One random window of at most `window` items per sequence, reversed and right-padded."""
    batches = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        items = np.zeros((len(chunk), window), dtype=np.int64)
        item_kinds = np.zeros((len(chunk), window), dtype=np.int64)
        for row, index in enumerate(chunk):
            sequence = sequences[index]
            length = min(window, len(sequence))
            begin = int(rng.integers(len(sequence) - length + 1))
            items[row, :length] = sequence[begin : begin + length][::-1]
            item_kinds[row, :length] = kinds[index][begin : begin + length][::-1]
        batches.append((torch.from_numpy(items), torch.from_numpy(item_kinds)))
    return batches


def _n_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
