"""Configuration of the sequential recommender: what the model is, and how it is trained.

Both dataclasses round-trip through plain JSON (`to_dict` / `from_dict`) because they are stored
beside the weights of every model version and in training checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from recsys_core.data import EVENT_KINDS

LossName = Literal["auto", "full", "sampled"]
DeviceName = Literal["auto", "cpu", "cuda"]

_C = TypeVar("_C", bound="_JsonConfig")


class _JsonConfig:
    """Shared JSON round trip that refuses unknown keys (a typo must not be silently ignored)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_C], values: dict[str, Any]) -> _C:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Shape of the Transformer and of the item representation.

    An item's vector is the sum of a learned ID embedding (`use_id`) and a learned linear
    projection of its frozen side vector (`use_text`: a text embedding, or any fixed feature vector
    such as multi-hot attributes), so items without interactions still get a vector.
    """

    n_items: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    use_id: bool = True
    use_text: bool = True
    text_dim: int = 384
    n_kinds: int = len(EVENT_KINDS) + 1
    ff_mult: int = 2
    # Probability of hiding an item's ID embedding during training, so that the text pathway
    # alone learns to place items (what new products depend on). Used only with both parts:
    # text-specific settings are inert in an ID-only model, so one preset serves an ablation.
    id_dropout: float = 0.0
    # Dimensions of the text-match channel (0 = off): each candidate also scores a learned
    # weight times the cosine between its text and the text of the shopper's latest item, in a
    # PCA basis of the catalogue's side vectors. It gives the model the exact "more like what
    # you just looked at" signal that a d_model-sized projection blurs, which matters most for
    # items with few interactions. Used only with use_text.
    text_match_dim: int = 0
    # Weight of the text prior (0 = off), chosen after training on the validation split
    # (TrainConfig.text_prior_grid): at inference every candidate also gains text_prior x the
    # spread (std) of the shopper's scores x the text-match cosine between it and the latest
    # item. The learned text-match weights are fit on training events, which the ID embeddings
    # memorise; on unseen events text deserves more weight, most of all for rarely bought items.
    text_prior: float = 0.0
    # Kind index used when a caller gives a history without kinds (the commonest training kind).
    default_kind: int = 1

    @property
    def uses_text_match(self) -> bool:
        return self.use_text and self.text_match_dim > 0

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if not (self.use_id or self.use_text):
            raise ValueError("the model needs at least one of use_id / use_text")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.max_len < 1 or self.n_layers < 1:
            raise ValueError("max_len and n_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.id_dropout < 1.0:
            raise ValueError("dropout and id_dropout must be in [0, 1)")
        if self.text_match_dim < 0:
            raise ValueError("text_match_dim must be >= 0")
        if self.text_prior < 0:
            raise ValueError(f"text_prior must be >= 0, got {self.text_prior}")
        if self.use_text and self.text_match_dim > self.text_dim:
            raise ValueError(f"text_match_dim must be <= text_dim ({self.text_dim})")
        if not 1 <= self.default_kind < self.n_kinds:
            raise ValueError(f"default_kind must be in [1, {self.n_kinds - 1}]")


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """How to train: optimisation, loss, early stopping, budget, device and augmentation."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    # "full": softmax over the whole catalogue; "sampled": sampled softmax with logQ correction;
    # "auto": full up to `sampled_above_items` items, sampled beyond (memory grows with items).
    loss: LossName = "auto"
    sampled_above_items: int = 20_000
    n_negatives: int = 1024
    patience: int = 10
    seed: int = 42
    device: DeviceName = "auto"
    bf16: bool = True  # autocast to bfloat16 on CUDA only; CPU always runs float32
    augmentation: str = "none"
    augmentation_prob: float = 0.0
    max_train_seconds: float | None = None
    grad_clip: float | None = 1.0
    eval_batch_size: int = 512
    # Cap on validation users scored after each epoch (None = all); large shops validate faster.
    max_eval_users: int | None = None
    # torch intra-op threads while training (None = leave torch's setting alone).
    num_threads: int | None = None
    # Text prior weights tried on the validation split after training (ModelConfig.text_prior);
    # the best by NDCG@10 is kept. Needs a text-match channel; () keeps the prior off.
    text_prior_grid: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.loss not in ("auto", "full", "sampled"):
            raise ValueError(f"loss must be auto, full or sampled, got {self.loss!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.n_negatives < 1:
            raise ValueError("n_negatives must be >= 1")
        if not 0.0 <= self.augmentation_prob <= 1.0:
            raise ValueError("augmentation_prob must be in [0, 1]")
        # JSON gives a list back: keep the field a tuple so that configs stay hashable and equal.
        object.__setattr__(self, "text_prior_grid", tuple(float(w) for w in self.text_prior_grid))
        if any(w < 0 for w in self.text_prior_grid):
            raise ValueError("text_prior_grid weights must be >= 0")

    def uses_sampled_loss(self, n_items: int) -> bool:
        """Whether training uses sampled softmax for a catalogue of `n_items`."""
        if self.loss == "auto":
            return n_items > self.sampled_above_items
        return self.loss == "sampled"
