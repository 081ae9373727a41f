"""The discriminator of the generator-augmentation arms: real earlier items, or generated ones?

Examples come in pairs cut from training sequences that are long enough: a real window of
`n_generated + m` items, and the same window whose first `n_generated` items were replaced by
the generator's guess from the last `m` (m <= short_max, as for a short history). So the
discriminator judges exactly what augmentation adds. A bidirectional Transformer reads the whole
window; its accuracy on pairs from held-out users measures how far generated prefixes are from
real ones (0.5 = indistinguishable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys_core.config import ModelConfig

if TYPE_CHECKING:
    from recsys_core.augment.generator import GeneratorSettings, ReverseGenerator

_HELD_OUT_PAIRS_PER_LENGTH = 256
_ACCURACY_SEED = 12345  # same noise at every accuracy check, so checks compare generators


class Discriminator(nn.Module):
    """Bidirectional Transformer over item vectors (ID + text, as the recommender) -> real logit."""

    def __init__(self, config: ModelConfig, text_embeddings: torch.Tensor | None) -> None:
        super().__init__()
        d = config.d_model
        self.d_model = d
        n_rows = config.n_items + 1
        self.item_id = nn.Embedding(n_rows, d, padding_idx=0) if config.use_id else None
        if config.use_text:
            if text_embeddings is None:
                raise ValueError("config.use_text is set but no text_embeddings were given")
            # Shares the generator's frozen side matrix: no second copy of the catalogue.
            self.register_buffer("text_embeddings", text_embeddings, persistent=False)
            self.text_proj: nn.Linear | None = nn.Linear(config.text_dim, d, bias=False)
        else:
            self.text_proj = None
        self.position = nn.Embedding(config.max_len, d)
        layer = nn.TransformerEncoderLayer(
            d_model=d,
            nhead=config.n_heads,
            dim_feedforward=d * config.ff_mult,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=config.n_layers, enable_nested_tensor=False
        )
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)
        for embedding in (self.item_id, self.position):
            if embedding is not None:
                nn.init.normal_(embedding.weight, std=0.02)

    def table(self) -> torch.Tensor:
        """Item vectors [n_items + 1, d] (row 0, padding, is not used: windows are never padded)."""
        parts = []
        if self.item_id is not None:
            parts.append(self.item_id.weight)
        if self.text_proj is not None:
            parts.append(self.text_proj(self.text_embeddings))
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Real-vs-generated logit [B] for unpadded windows of item vectors [B, L, d]."""
        positions = torch.arange(vectors.shape[1], device=vectors.device)
        x = vectors * math.sqrt(self.d_model) + self.position(positions).unsqueeze(0)
        x = self.final_norm(self.encoder(x))
        return self.head(x.mean(dim=1)).squeeze(1)


@dataclass
class PairBatch:
    """Real windows [B, k + m] and their last m items (the seeds) with the seeds' kinds."""

    real: torch.Tensor
    seeds: torch.Tensor
    seed_kinds: torch.Tensor


class PairSampler:
    """Real windows and seeds from training users, plus a fixed set from held-out users."""

    def __init__(
        self,
        sequences: list[np.ndarray],
        kinds: list[np.ndarray],
        train_ids: np.ndarray,
        held_ids: np.ndarray,
        settings: GeneratorSettings,
        rng: np.random.Generator,
    ) -> None:
        self.sequences = sequences
        self.kinds = kinds
        self.k = settings.n_generated
        self.short_max = settings.short_max
        self.batch_size = settings.pair_batch_size
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        # Candidates per seed length m: sequences holding at least k + m items.
        self.train_by_m = {
            m: train_ids[lengths[train_ids] >= self.k + m] for m in range(1, self.short_max + 1)
        }
        self.train_by_m = {m: ids for m, ids in self.train_by_m.items() if len(ids)}
        self.held_out: list[PairBatch] = []
        for m in range(1, self.short_max + 1):
            ids = held_ids[lengths[held_ids] >= self.k + m]
            if len(ids):
                chosen = rng.permutation(ids)[:_HELD_OUT_PAIRS_PER_LENGTH]
                self.held_out.append(self._cut(chosen, m, rng))

    @property
    def usable(self) -> bool:
        """Whether there are sequences long enough to train and to score a discriminator."""
        return bool(self.train_by_m) and bool(self.held_out)

    def sample(self, rng: np.random.Generator) -> PairBatch:
        """A training batch with one seed length m drawn uniformly from those available."""
        lengths = sorted(self.train_by_m)
        m = lengths[int(rng.integers(len(lengths)))]
        ids = self.train_by_m[m]
        chosen = rng.choice(ids, size=min(self.batch_size, len(ids)), replace=False)
        return self._cut(chosen, m, rng)

    def _cut(self, ids: np.ndarray, m: int, rng: np.random.Generator) -> PairBatch:
        width = self.k + m
        real = np.empty((len(ids), width), dtype=np.int64)
        seed_kinds = np.empty((len(ids), m), dtype=np.int64)
        for row, index in enumerate(ids):
            begin = int(rng.integers(len(self.sequences[index]) - width + 1))
            real[row] = self.sequences[index][begin : begin + width]
            seed_kinds[row] = self.kinds[index][begin + self.k : begin + width]
        real_tensor = torch.from_numpy(real)
        return PairBatch(real_tensor, real_tensor[:, self.k :], torch.from_numpy(seed_kinds))


def fake_vectors(
    discriminator: Discriminator, generated: torch.Tensor, seeds: torch.Tensor
) -> torch.Tensor:
    """Discriminator input for generated prefixes (item ids, chronological) + real seeds."""
    return discriminator.table()[torch.cat([generated, seeds], dim=1)]


def discriminator_loss(
    discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy: real windows -> 1, generated ones -> 0 (inputs are item vectors)."""
    real_logits = discriminator(real)
    fake_logits = discriminator(fake)
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def fit_discriminator(
    discriminator: Discriminator,
    generator: ReverseGenerator,
    pairs: PairSampler,
    steps: int,
    rng: np.random.Generator,
    torch_rng: torch.Generator,
    check_stop: Callable[[], None],
    lr: float = 1e-3,
) -> float:
    """Train against a frozen generator for `steps` batches; return held-out accuracy."""
    optimizer = torch.optim.AdamW(discriminator.parameters(), lr=lr)
    device = generator.device
    for _ in range(steps):
        check_stop()
        batch = pairs.sample(rng)
        discriminator_step(discriminator, optimizer, generator, batch, torch_rng, device)
    return held_out_accuracy(discriminator, generator, pairs)


def discriminator_step(
    discriminator: Discriminator,
    optimizer: torch.optim.Optimizer,
    generator: ReverseGenerator,
    batch: PairBatch,
    torch_rng: torch.Generator,
    device: torch.device,
) -> float:
    """One update of the discriminator on a real/generated batch (generator untouched)."""
    seeds, seed_kinds = batch.seeds.to(device), batch.seed_kinds.to(device)
    generator.model.eval()
    with torch.no_grad():
        generated, _ = generator.rollout(seeds, seed_kinds, torch_rng)
    discriminator.train()
    real = discriminator.table()[batch.real.to(device)]
    loss = discriminator_loss(discriminator, real, fake_vectors(discriminator, generated, seeds))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def held_out_accuracy(
    discriminator: Discriminator, generator: ReverseGenerator, pairs: PairSampler
) -> float:
    """Balanced accuracy on the held-out users' pairs (real > 0, generated < 0)."""
    discriminator.eval()
    generator.model.eval()
    device = generator.device
    torch_rng = torch.Generator(device=device).manual_seed(_ACCURACY_SEED)
    real_table = discriminator.table()
    correct_real = correct_fake = total = 0
    for batch in pairs.held_out:
        seeds = batch.seeds.to(device)
        generated, _ = generator.rollout(seeds, batch.seed_kinds.to(device), torch_rng)
        correct_real += int((discriminator(real_table[batch.real.to(device)]) > 0).sum())
        fake = fake_vectors(discriminator, generated, seeds)
        correct_fake += int((discriminator(fake) < 0).sum())
        total += len(seeds)
    return (correct_real + correct_fake) / (2 * total)
