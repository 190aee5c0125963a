"""A Llama-style decoder-only transformer on byte-level text: pre-norm RMSNorm, rotary
position embeddings, grouped-query attention with a KV cache, SwiGLU MLP. Modes and steps
are those of gpt (infer, train, prefill into a KV cache, decode one token).

The base preset is the Llama-3.2-1B shape (16 layers, d_model 2048, 32 query heads, 8 KV
heads, MLP 8192, vocabulary 128256, rope theta 500000, embeddings tied as in the published
model): 1,235,814,400 parameters, Meta's "1.24B". Llama-3.2's rope frequency scaling for
long contexts is left out (it changes no shape or FLOP and only matters beyond 8k tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads import flops
from workloads.base import BuildContext, Instance, WorkloadError
from workloads.gpt import DecoderInstance, GPTWorkload
from workloads.transformer import Cache, KVCache, SlotCache


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, [max_len, head_dim] each, in fp32: position p and
    pair i rotate by p * theta^(-2i / head_dim); both halves of a head share the angles."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` [batch, heads, T, head_dim] by the angles of its T positions (cos, sin:
    [T, head_dim], or [batch, 1, T, head_dim] when each row has its own positions), in the
    rotate-half layout of the Llama reference code."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x * cos.to(x.dtype) + rotated * sin.to(x.dtype)).to(x.dtype)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with `n_head` query heads sharing `n_kv_head` key/value heads
    (n_kv_head = n_head is plain multi-head attention), rotary positions on queries and
    keys, no biases. With a KVCache the new keys/values (n_kv_head heads) are stored after
    the cached ones."""

    def __init__(self, d_model: int, n_head: int, n_kv_head: int) -> None:
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = d_model // n_head
        kv_width = self.head_dim * n_kv_head
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, kv_width, bias=False)
        self.v = nn.Linear(d_model, kv_width, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: Cache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        batch, tokens, d_model = x.shape
        q = self.q(x).view(batch, tokens, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k(x).view(batch, tokens, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v(x).view(batch, tokens, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask: torch.Tensor | None = None
        is_causal = True
        if cache is not None:
            k, v, mask, is_causal = cache.attend(layer, k, v, causal=True)
            q = q.to(k.dtype)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=is_causal,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        return self.o(out.transpose(1, 2).reshape(batch, tokens, d_model))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class LlamaBlock(nn.Module):
    """Pre-norm block: x + attn(rmsnorm(x)), then x + mlp(rmsnorm(x)); `mlp` is any module
    from d_model to d_model (SwiGLU here, a mixture of experts in workloads/moe.py)."""

    def __init__(
        self, d_model: int, n_head: int, n_kv_head: int, mlp: nn.Module, eps: float
    ) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(d_model, eps=eps)
        self.attn = GroupedQueryAttention(d_model, n_head, n_kv_head)
        self.mlp_norm = nn.RMSNorm(d_model, eps=eps)
        self.mlp = mlp

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: Cache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


LLAMA_INIT_STD = 0.02
"""Llama's initialisation: every weight matrix N(0, 0.02) (Hugging Face's LlamaConfig
initializer_range), norm weights 1."""


def normal_init(model: nn.Module, std: float) -> None:
    """Every weight matrix of `model` (each parameter of 2 or more dimensions: linear layers,
    embeddings) drawn from N(0, std), in parameter order, each shared one once; vectors (norm
    weights) and the parameters a module names in its `own_init` (initialised by the module
    itself) keep their initialisation."""
    own = {
        id(parameter)
        for module in model.modules()
        for name in getattr(module, "own_init", ())
        if (parameter := getattr(module, name, None)) is not None
    }
    for parameter in model.parameters():
        if parameter.dim() >= 2 and id(parameter) not in own:
            nn.init.normal_(parameter, 0.0, std)


class Llama(nn.Module):
    """Token embedding, `n_layer` LlamaBlocks whose MLPs `make_mlp(layer)` builds, final
    RMSNorm and a vocabulary head (untied unless `tied`). Positions are rotary (no learned
    position table); the rotary tables cover `seq_len` positions. Weight matrices start
    N(0, init_std) (`normal_init`)."""

    def __init__(
        self,
        vocab: int,
        seq_len: int,
        d_model: int,
        n_layer: int,
        n_head: int,
        n_kv_head: int,
        make_mlp: Callable[[int], nn.Module],
        tied: bool = False,
        rope_theta: float = 500000.0,
        eps: float = 1e-5,
        init_std: float = LLAMA_INIT_STD,
    ) -> None:
        super().__init__()
        self.n_layer, self.n_kv_head = n_layer, n_kv_head
        self.head_dim = d_model // n_head
        self.tok = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(
            LlamaBlock(d_model, n_head, n_kv_head, make_mlp(layer), eps) for layer in range(n_layer)
        )
        self.norm = nn.RMSNorm(d_model, eps=eps)
        self.head = nn.Linear(d_model, vocab, bias=False)
        if tied:
            self.head.weight = self.tok.weight
        cos, sin = rope_tables(self.head_dim, seq_len, rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        normal_init(self, init_std)

    def forward(
        self, tokens: torch.Tensor, cache: Cache | None = None, last_only: bool = False
    ) -> torch.Tensor:
        """Logits for `tokens` [batch, T]; with a cache the tokens continue the cached ones
        (and are added to it; a SlotCache continues each row's own request); `last_only`
        computes logits of the last position only."""
        count = tokens.shape[1]
        if cache is None:
            positions = torch.arange(count, device=tokens.device)
        else:
            positions = cache.positions(count, tokens.device)
        cos, sin = self.cos[positions], self.sin[positions]
        if positions.dim() == 2:  # a SlotCache: positions per row, [rows, 1 (heads), T, D]
            cos, sin = cos[:, None], sin[:, None]
        x = self.tok(tokens)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer)
        if cache is not None:
            cache.advance(count)
        if last_only:
            x = x[:, -1:]
        return self.head(self.norm(x))

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype) -> KVCache:
        device = self.tok.weight.device
        return KVCache(self.n_layer, batch, self.n_kv_head, max_len, self.head_dim, device, dtype)

    def new_slots(self, slots: int, max_len: int, dtype: torch.dtype) -> SlotCache:
        """Per-request caches for continuous batching: `slots` rows of `max_len` positions."""
        device = self.tok.weight.device
        return SlotCache(self.n_layer, slots, self.n_kv_head, max_len, self.head_dim, device, dtype)


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters of `model` (a tied head counted once)."""
    return sum(p.numel() for p in model.parameters())


def attention_params(d_model: int, n_head: int, n_kv_head: int) -> int:
    """Weights of one grouped-query attention layer (Q, K, V, O; no biases)."""
    kv_width = d_model // n_head * n_kv_head
    return 2 * d_model * d_model + 2 * d_model * kv_width


class LlamaInstance(DecoderInstance):
    workload_name = "llama"

    def make_model(self, params: dict[str, Any]) -> nn.Module:
        d_model, d_ff = params["d_model"], params["d_ff"]
        return Llama(
            params["vocab"],
            params["seq_len"],
            d_model,
            params["n_layer"],
            params["n_head"],
            params["n_kv_head"],
            lambda _layer: SwiGLU(d_model, d_ff),
            tied=params["tied"],
            rope_theta=params["rope_theta"],
        )

    def forward_flops(self, queries: int, keys: int, head_rows: int | None = None) -> float:
        p, batch = self.p, self.ctx.batch_size
        rows = batch * queries
        layer = flops.gqa_attention_layer(
            batch, queries, keys, p["d_model"], p["n_head"], p["n_kv_head"]
        ) + flops.swiglu(rows, p["d_model"], p["d_ff"])
        head = flops.linear(rows if head_rows is None else head_rows, p["d_model"], p["vocab"])
        return p["n_layer"] * layer + head

    def bytes_moved(self, mode: str) -> float | None:
        """Memory traffic of a prefill or decode step (`flops.serving_bytes`): every weight,
        the n_kv_head-wide KV cache, and per new token and layer about 8 * d_model + 2 * KV
        width + 3 * d_ff activation elements (norms, q/k/v, attention output, projection,
        residuals; the MLP's gate, up and product written and read)."""
        if mode not in ("prefill", "decode"):
            return None
        p, batch = self.p, self.ctx.batch_size
        new, cached = self.serving_tokens(mode)
        d, kv_width = p["d_model"], p["d_model"] // p["n_head"] * p["n_kv_head"]
        return flops.serving_bytes(
            parameter_count(self.model),
            batch,
            new,
            cached,
            p["n_layer"],
            kv_width=kv_width,
            activation_width=8 * d + 2 * kv_width + 3 * p["d_ff"],
            vocab=p["vocab"],
            dtype=self.ctx.dtype_name,
            head_rows=batch,
        )


def check_heads(name: str, params: dict[str, Any]) -> None:
    """Raise WorkloadError unless the query heads split into groups over the KV heads and
    the head size is even (rotary embeddings rotate pairs)."""
    n_head, n_kv_head = params["n_head"], params["n_kv_head"]
    if n_head % n_kv_head:
        raise WorkloadError(
            f"{name}: n_head ({n_head}) must be a multiple of n_kv_head ({n_kv_head}): "
            "query heads share key/value heads in equal groups."
        )
    head_dim = params["d_model"] // n_head
    if head_dim % 2:
        raise WorkloadError(
            f"{name}: the head size d_model / n_head ({head_dim}) must be even for rotary "
            "embeddings."
        )


class LlamaWorkload(GPTWorkload):
    name = "llama"
    description = "Llama decoder (RMSNorm, RoPE, GQA with KV cache, SwiGLU) on byte text, AdamW"
    modes = ("infer", "train", "prefill", "decode")
    presets = {
        "tiny": {
            "batch": 2,
            "seq_len": 32,
            "d_model": 32,
            "n_layer": 2,
            "n_head": 4,
            "n_kv_head": 2,
            "d_ff": 64,
            "vocab": 256,
            "tied": False,
            "rope_theta": 10000.0,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 1e-3,
        },
        "small": {
            "batch": 4,
            "seq_len": 128,
            "d_model": 128,
            "n_layer": 4,
            "n_head": 4,
            "n_kv_head": 2,
            "d_ff": 352,
            "vocab": 256,
            "tied": False,
            "rope_theta": 10000.0,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 1e-3,
        },
        "base": {  # Llama-3.2-1B shape; its embeddings are tied in the published model
            "batch": 4,
            "seq_len": 2048,
            "d_model": 2048,
            "n_layer": 16,
            "n_head": 32,
            "n_kv_head": 8,
            "d_ff": 8192,
            "vocab": 128256,
            "tied": True,
            "rope_theta": 500000.0,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 3e-4,
        },
    }

    def validate_params(self, params: dict[str, Any]) -> None:
        """gpt's rules (lengths, vocab, d_model % n_head) plus the GQA head grouping."""
        super().validate_params(params)
        check_heads(self.name, params)

    def build(self, ctx: BuildContext) -> Instance:
        return LlamaInstance(ctx, ctx.params)
