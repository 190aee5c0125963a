"""Shared transformer pieces: pre-norm blocks with self-attention (optionally causal, with a
KV cache) and a GELU MLP; optional adaLN modulation for diffusion transformers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Preallocated keys and values of every layer, [batch, heads, max_len, head_dim] each.

    `length` is the number of cached positions; attention writes new positions after it.
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (batch, n_head, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.length = 0

    def store(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `k`, `v` (new positions) after the cached ones; return all keys and values."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested.")
        self.keys[layer][:, :, start:end] = k.to(self.keys[layer].dtype)
        self.values[layer][:, :, start:end] = v.to(self.values[layer].dtype)
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def positions(self, tokens: int, device: torch.device) -> torch.Tensor:
        """Positions of `tokens` new tokens that continue the cached ones: [tokens]."""
        return torch.arange(self.length, self.length + tokens, device=device)

    def attend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, causal: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Store the new keys/values [batch, heads, tokens, head_dim] and return what attention
        needs: all keys, all values, a boolean mask (or None) and whether to apply the causal
        mask of SDPA."""
        past, tokens = self.length, k.shape[2]
        k, v = self.store(layer, k, v)
        if past == 0 or not causal:
            return k, v, None, causal
        mask = None
        if tokens > 1:  # new query i sits at position past + i and sees keys 0..past + i
            rows = torch.arange(tokens, device=k.device)[:, None] + past
            mask = torch.arange(k.shape[2], device=k.device)[None, :] <= rows
        return k, v, mask, False

    def advance(self, tokens: int) -> None:
        """Count `tokens` new positions as cached (after every layer stored them)."""
        self.length += tokens


class SlotCache:
    """Per-request KV caches in `slots` rows of one buffer, each row with its own length: what
    continuous batching needs (requests join and leave a running batch; each attends only to
    its own cached positions).

    A forward runs over the rows set by `use(rows)` (a list of slot indices): new tokens are
    written after each row's own length, attention is masked per row.
    """

    def __init__(
        self,
        n_layer: int,
        slots: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (slots, n_head, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.lengths = [0] * slots
        self.device = device
        self._rows: list[int] = []
        self._index = torch.zeros(0, dtype=torch.long, device=device)
        self._past = torch.zeros(0, dtype=torch.long, device=device)

    def use(self, rows: list[int]) -> None:
        """Select the slots the next forward runs over (its batch rows, in this order)."""
        self._rows = list(rows)
        self._index = torch.tensor(self._rows, dtype=torch.long, device=self.device)
        self._past = torch.tensor(
            [self.lengths[r] for r in self._rows], dtype=torch.long, device=self.device
        )

    def reset(self, slot: int) -> None:
        """Free a slot: its next request starts from an empty cache."""
        self.lengths[slot] = 0

    def positions(self, tokens: int, device: torch.device) -> torch.Tensor:
        """Positions of the new tokens of each selected row: [rows, tokens]."""
        return self._past[:, None] + torch.arange(tokens, device=device)[None, :]

    def attend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, causal: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Like KVCache.attend, row by row: keys up to the longest selected row, and a mask
        that lets each new query see its own row's positions up to itself."""
        tokens = k.shape[2]
        end = max(self.lengths[r] for r in self._rows) + tokens
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested.")
        positions = self.positions(tokens, k.device)  # [rows, tokens]
        rows = self._index[:, None]
        # Advanced indices (rows, positions) around a slice: value shape [rows, tokens, H, D].
        self.keys[layer][rows, :, positions] = k.transpose(1, 2).to(self.keys[layer].dtype)
        self.values[layer][rows, :, positions] = v.transpose(1, 2).to(self.values[layer].dtype)
        keys = self.keys[layer][self._index, :, :end]
        values = self.values[layer][self._index, :, :end]
        span = torch.arange(end, device=k.device)[None, None, :]
        mask = span <= positions[:, :, None] if causal else span < (positions[:, -1:, None] + 1)
        return keys, values, mask[:, None], False

    def advance(self, tokens: int) -> None:
        for r in self._rows:
            self.lengths[r] += tokens
        self._past = self._past + tokens


Cache = KVCache | SlotCache
"""A cache attention can run against: one length for the batch, or one per row."""


class SelfAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`."""

    def __init__(self, d_model: int, n_head: int, causal: bool) -> None:
        super().__init__()
        self.n_head = n_head
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache: Cache | None = None, layer: int = 0) -> torch.Tensor:
        batch, tokens, d_model = x.shape
        q, k, v = self.qkv(x).split(d_model, dim=2)
        q, k, v = (t.view(batch, tokens, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        mask: torch.Tensor | None = None
        is_causal = self.causal
        if cache is not None:
            k, v, mask, is_causal = cache.attend(layer, k, v, self.causal)
            q = q.to(k.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, d_model))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff)
        self.down = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)).

    With `modulation` (adaLN: shift, scale, gate for attention and for the MLP, each
    [batch, d_model]) the normalized input is `norm(x) * (1 + scale) + shift` and each branch
    is multiplied by its gate, as in DiT's adaLN-Zero block.
    """

    def __init__(
        self, d_model: int, n_head: int, d_ff: int, causal: bool, norm_affine: bool = True
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=norm_affine)
        self.attn = SelfAttention(d_model, n_head, causal)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=norm_affine)
        self.mlp = FeedForward(d_model, d_ff)

    def forward(
        self,
        x: torch.Tensor,
        cache: Cache | None = None,
        layer: int = 0,
        modulation: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        if modulation is None:
            x = x + self.attn(self.norm1(x), cache, layer)
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = (m[:, None, :] for m in modulation)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, cache, layer)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)
