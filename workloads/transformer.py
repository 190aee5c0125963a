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


class SelfAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`."""

    def __init__(self, d_model: int, n_head: int, causal: bool) -> None:
        super().__init__()
        self.n_head = n_head
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        batch, tokens, d_model = x.shape
        q, k, v = self.qkv(x).split(d_model, dim=2)
        q, k, v = (t.view(batch, tokens, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        mask: torch.Tensor | None = None
        is_causal = self.causal
        if cache is not None:
            past = cache.length
            k, v = cache.store(layer, k, v)
            q = q.to(k.dtype)
            if past > 0 and self.causal:
                # New query i sits at position past + i and sees keys 0..past + i.
                is_causal = False
                if tokens > 1:
                    rows = torch.arange(tokens, device=x.device)[:, None] + past
                    mask = torch.arange(k.shape[2], device=x.device)[None, :] <= rows
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
        cache: KVCache | None = None,
        layer: int = 0,
        modulation: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        if modulation is None:
            x = x + self.attn(self.norm1(x), cache, layer)
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = (m[:, None, :] for m in modulation)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, cache, layer)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)
