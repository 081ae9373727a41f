"""The sequential recommender: a causal Transformer over a shopper's events (SASRec-style, pre-LN).

Every item, on the input side and on the output side, is the same vector: a learned ID embedding
plus a learned projection of the item's frozen side vector (text embedding or attribute
multi-hot). Scoring is a dot product between the last hidden state and that shared item table,
so a product that never had an interaction is still placed by its text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recsys_core.config import ModelConfig

# Popularity buckets of the text-match weight: 0, 1, 2-3, 4-7, ..., >= 64 interactions.
_MATCH_BUCKETS = 8
# Side matrices sparser than this are multiplied as sparse tensors (attribute multi-hots are ~1%).
_SPARSE_DENSITY = 0.05


class SeqRecModel(nn.Module):
    """Causal Transformer whose item table is `ID embedding + Linear(side vector)`."""

    def __init__(self, config: ModelConfig, text_embeddings: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        n_rows = config.n_items + 1  # row 0 is padding
        self.item_id = nn.Embedding(n_rows, d, padding_idx=0) if config.use_id else None
        if config.use_text:
            side = torch.zeros(n_rows, config.text_dim)
            if text_embeddings is not None:
                side[1:] = torch.as_tensor(
                    _check_side_matrix(text_embeddings, config), dtype=torch.float32
                )
            # Persistent buffer: the frozen side vectors travel inside the weights file.
            self.register_buffer("text_embeddings", side)
            self.text_proj: nn.Linear | None = nn.Linear(config.text_dim, d, bias=False)
        else:
            self.text_proj = None
        self.text_match_weight: nn.Parameter | None = None
        if config.uses_text_match:
            k = config.text_match_dim
            self.register_buffer("text_mean", torch.zeros(config.text_dim))
            self.register_buffer("text_basis", torch.zeros(config.text_dim, k))
            self.register_buffer("text_codes", torch.zeros(n_rows, k))
            # One weight per popularity bucket of the candidate: text can count for more where
            # behaviour is thin. Buckets come from training counts (set_item_counts).
            self.register_buffer("item_bucket", torch.zeros(n_rows, dtype=torch.long))
            self.text_match_weight = nn.Parameter(torch.ones(_MATCH_BUCKETS))
            if text_embeddings is not None:
                self._fit_text_codes()
        self.position = nn.Embedding(config.max_len, d)
        self.kind = nn.Embedding(config.n_kinds, d, padding_idx=0)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            _CausalBlock(d, config.n_heads, d * config.ff_mult, config.dropout)
            for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(d)
        self._sparse_side: tuple[tuple[int, int], torch.Tensor] | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for embedding in (self.item_id, self.position, self.kind):
            if embedding is not None:
                nn.init.normal_(embedding.weight, std=0.02)
                if embedding.padding_idx is not None:
                    with torch.no_grad():
                        embedding.weight[embedding.padding_idx].zero_()

    # ----------------------------------------------------------------- item representation
    def item_vectors(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors for `index` (any shape), or the whole table [n_items + 1, d] if None.

        During training whole items lose their ID part with probability `id_dropout`, which
        forces the text projection to place items on its own.
        """
        parts: list[torch.Tensor] = []
        if self.item_id is not None:
            ids = self.item_id.weight if index is None else self.item_id(index)
            if self.training and self.config.id_dropout > 0 and self.text_proj is not None:
                keep = torch.rand(ids.shape[:-1], device=ids.device) >= self.config.id_dropout
                ids = ids * keep.unsqueeze(-1).to(ids.dtype)
            parts.append(ids)
        if self.text_proj is not None:
            if index is None:
                parts.append(self._project_all_side())
            elif self._side_matrix().layout != torch.strided:
                # Sparse side vectors (token multi-hots): projecting the whole catalogue costs
                # less than gathering wide dense rows for every position of the batch.
                parts.append(self._project_all_side()[index])
            else:
                parts.append(self.text_proj(self.text_embeddings[index]))
        vectors = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        if index is None:
            # Row 0 is padding (and masked items): keep it exactly zero, also under gradients.
            vectors = torch.cat([torch.zeros_like(vectors[:1]), vectors[1:]])
        return vectors

    def _fit_text_codes(self) -> None:
        """PCA basis of the catalogue's side vectors; codes are unit vectors in that basis."""
        side = self.text_embeddings[1:]
        k = self.config.text_match_dim
        density = float((side != 0).float().mean())
        matrix = side.to_sparse() if density < _SPARSE_DENSITY else side
        # A catalogue smaller than k has fewer principal directions: the rest stay zero.
        q = min(k, *side.shape)
        with torch.sparse.check_sparse_tensor_invariants(enable=False):  # built just above
            _, _, basis = torch.pca_lowrank(matrix, q=q, center=True, niter=4)
        self.text_mean.copy_(side.mean(dim=0))
        self.text_basis.zero_()
        self.text_basis[:, :q] = basis[:, :q]
        self.text_codes[1:] = self.text_code(side)

    def text_code(self, side_vectors: torch.Tensor) -> torch.Tensor:
        """Unit-length text-match codes of side vectors (new products get theirs from this)."""
        codes = (side_vectors - self.text_mean) @ self.text_basis
        return F.normalize(codes, dim=-1)

    def set_item_counts(self, counts: np.ndarray) -> None:
        """Popularity bucket of every item from its training interactions: log2(count + 1)."""
        if self.text_match_weight is None:
            return
        buckets = np.minimum(np.log2(np.asarray(counts) + 1).astype(np.int64), _MATCH_BUCKETS - 1)
        self.item_bucket.copy_(torch.from_numpy(buckets))

    def text_match(
        self,
        last_items: torch.Tensor,
        candidates: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """weight(candidate's popularity) * cosine(text of the latest item, text of the
        candidate), or None when the channel is off. Candidates: None (every item:
        [N, n_items + 1]), shared [M] ([N, M]) or per row [N, M] ([N, M]).
        """
        weights = self.text_match_weights()
        if weights is None:
            return None
        codes = self.text_codes
        latest = codes[last_items]
        if candidates is None:
            return latest @ codes.t() * weights
        if candidates.dim() == 1:
            return latest @ codes[candidates].t() * weights[candidates]
        similarity = torch.einsum("nk,nmk->nm", latest, codes[candidates])
        return similarity * weights[candidates]

    def text_match_weights(self, buckets: torch.Tensor | None = None) -> torch.Tensor | None:
        """The text-match weight of each item row, from its popularity bucket (`buckets`
        replaces the model's own), or None when the channel is off."""
        if self.text_match_weight is None:
            return None
        return self.text_match_weight[self.item_bucket if buckets is None else buckets]

    def project_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Vectors of items known only by their side vector (new products after training)."""
        if self.text_proj is None:
            raise ValueError("this model was trained without text (use_text=False)")
        return self.text_proj(text_embeddings)

    def _side_matrix(self) -> torch.Tensor:
        """The side vectors as stored, or as a sparse copy when they are mostly zeros."""
        side: torch.Tensor = self.text_embeddings
        key = (side.data_ptr(), side._version)
        if self._sparse_side is None or self._sparse_side[0] != key:
            density = float((side != 0).float().mean()) if side.numel() else 1.0
            self._sparse_side = (key, side.to_sparse() if density < _SPARSE_DENSITY else side)
        return self._sparse_side[1]

    def _project_all_side(self) -> torch.Tensor:
        assert self.text_proj is not None
        matrix = self._side_matrix()
        if matrix.layout == torch.strided:
            return self.text_proj(matrix)
        # Sparse kernels have no bfloat16 autocast path: this product stays in float32.
        with torch.autocast(device_type=matrix.device.type, enabled=False):
            return torch.sparse.mm(matrix, self.text_proj.weight.float().t())

    # ----------------------------------------------------------------- sequence encoder
    def sequence_states(self, item_inputs: torch.Tensor, kinds: torch.Tensor) -> torch.Tensor:
        """Hidden state after each position [B, L, d] from item vectors [B, L, d].

        Sequences are right-padded; the causal mask keeps every real position away from the
        padding after it, so no key-padding mask is needed.
        """
        length = item_inputs.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequence length {length} exceeds max_len {self.config.max_len}")
        positions = torch.arange(length, device=item_inputs.device)
        x = item_inputs * math.sqrt(self.config.d_model)
        x = x + self.position(positions).unsqueeze(0) + self.kind(kinds)
        x = self.input_dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def user_vectors(
        self, items: torch.Tensor, kinds: torch.Tensor, lengths: torch.Tensor, table: torch.Tensor
    ) -> torch.Tensor:
        """The state after each sequence's last real event [B, d], given the item table."""
        states = self.sequence_states(table[items], kinds)
        return states[torch.arange(states.shape[0], device=states.device), _last(lengths)]


class _CausalBlock(nn.Module):
    """Pre-LN Transformer block with causal self-attention (fused scaled-dot-product kernel).

    Written out rather than nn.TransformerEncoderLayer: serving one shopper is dominated by
    per-call Python overhead, and this block has a fraction of that layer's checks.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attention_dropout = dropout
        self.norm_attention = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attention_out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        qkv = self.qkv(self.norm_attention(x))
        q, k, v = qkv.view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, length, d_model)
        x = x + self.dropout(self.attention_out(attended))
        hidden = self.dropout(F.gelu(self.ff_in(self.norm_ff(x))))
        return x + self.dropout(self.ff_out(hidden))


def pad_histories(
    histories: Sequence[np.ndarray],
    kinds: Sequence[np.ndarray | None] | None,
    max_len: int,
    default_kind: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad the last `max_len` events of each history into (items, kinds, lengths) tensors.

    Missing kinds become `default_kind`. An empty history becomes one padding position with
    length 0; callers decide what an empty history means.
    """
    if kinds is not None and len(kinds) != len(histories):
        raise ValueError(f"{len(histories)} histories but {len(kinds)} kind arrays")
    clipped = [np.asarray(history, dtype=np.int64)[-max_len:] for history in histories]
    width = max(1, max((len(history) for history in clipped), default=1))
    items = np.zeros((len(clipped), width), dtype=np.int64)
    kind_rows = np.zeros((len(clipped), width), dtype=np.int64)
    lengths = np.zeros(len(clipped), dtype=np.int64)
    for row, history in enumerate(clipped):
        n = len(history)
        lengths[row] = n
        items[row, :n] = history
        row_kinds = None if kinds is None else kinds[row]
        if row_kinds is None:
            kind_rows[row, :n] = default_kind
            continue
        row_kinds = np.asarray(row_kinds, dtype=np.int64)
        if len(row_kinds) != len(histories[row]):
            raise ValueError(
                f"history {row}: {len(histories[row])} items but {len(row_kinds)} kinds"
            )
        if n:
            kind_rows[row, :n] = row_kinds[-n:]
    return torch.from_numpy(items), torch.from_numpy(kind_rows), torch.from_numpy(lengths)


@torch.inference_mode()
def score_histories(
    model: SeqRecModel,
    table: torch.Tensor,
    histories: Sequence[np.ndarray],
    kinds: Sequence[np.ndarray | None] | None,
    *,
    bf16: bool = False,
) -> torch.Tensor:
    """Scores [B, n_items + 1] of every item for each history (column 0, padding, is -inf).

    `table` is `model.item_vectors()` computed once by the caller, so that scoring many
    batches does not recompute the item table.
    """
    config = model.config
    items, kind_rows, lengths = pad_histories(histories, kinds, config.max_len, config.default_kind)
    device = table.device
    with autocast(device, bf16):
        users = model.user_vectors(
            items.to(device), kind_rows.to(device), lengths.to(device), table
        )
    scores = users.float() @ table.float().t()
    match = model.text_match(latest_items(items, lengths).to(device))
    if match is not None:
        scores += match
    scores[:, 0] = -torch.inf
    return scores


def latest_items(items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each right-padded sequence's latest item (padding, 0, for an empty one)."""
    return items[torch.arange(len(items), device=items.device), _last(lengths)]


def _last(lengths: torch.Tensor) -> torch.Tensor:
    """Position of each sequence's latest event (0 for an empty one)."""
    return (lengths - 1).clamp(min=0)


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bfloat16 autocast on CUDA when asked; a disabled context on CPU (CPU runs float32)."""
    enabled = bf16 and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _check_side_matrix(matrix: np.ndarray, config: ModelConfig) -> np.ndarray:
    expected = (config.n_items, config.text_dim)
    if matrix.shape != expected:
        raise ValueError(f"text_embeddings has shape {matrix.shape}, expected {expected}")
    if not np.isfinite(matrix).all():
        raise ValueError("text_embeddings contains NaN or infinite values")
    return matrix
