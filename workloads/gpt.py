"""A GPT-style decoder-only transformer on byte-level text: full forward, training, and
serving (prefill into a KV cache, then decode one token at a time)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads import flops
from workloads.base import (
    BuildContext,
    Instance,
    Work,
    Workload,
    WorkloadError,
    mode_error,
)
from workloads.data import byte_windows
from workloads.serving import TokenServer
from workloads.training import TrainableInstance
from workloads.transformer import Block, Cache, KVCache, SlotCache

BYTE_VOCAB = 256
INIT_STD = 0.02
"""Standard deviation of GPT-2's (and Llama's) normal initialisation of weights."""


def gpt2_init(model: nn.Module, n_layer: int, std: float = INIT_STD) -> None:
    """GPT-2's initialisation (as in nanoGPT): every linear weight and embedding N(0, std),
    linear biases 0, and the projections that add into the residual stream (attention
    output `proj`, MLP `down`) N(0, std / sqrt(2 x n_layer)); norms keep weight 1, bias 0."""
    residual = std / math.sqrt(2 * n_layer)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name.rsplit(".", 1)[-1]
            nn.init.normal_(module.weight, 0.0, residual if last in ("proj", "down") else std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)


class GPT(nn.Module):
    """Token + learned position embeddings, `n_layer` causal pre-norm blocks, final norm and
    a vocabulary head (tied to the token embedding when `tied`), initialised as GPT-2
    (`gpt2_init`)."""

    def __init__(
        self, vocab: int, seq_len: int, d_model: int, n_layer: int, n_head: int, tied: bool
    ) -> None:
        super().__init__()
        self.n_layer, self.n_head, self.d_model = n_layer, n_head, d_model
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, 4 * d_model, causal=True) for _ in range(n_layer)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        if tied:
            self.head.weight = self.tok.weight
        gpt2_init(self, n_layer)

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
        x = self.tok(tokens) + self.pos(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.advance(count)
        if last_only:
            x = x[:, -1:]
        return self.head(self.norm(x))

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype) -> KVCache:
        device = self.tok.weight.device
        head_dim = self.d_model // self.n_head
        return KVCache(self.n_layer, batch, self.n_head, max_len, head_dim, device, dtype)

    def new_slots(self, slots: int, max_len: int, dtype: torch.dtype) -> SlotCache:
        """Per-request caches for continuous batching: `slots` rows of `max_len` positions."""
        device = self.tok.weight.device
        head_dim = self.d_model // self.n_head
        return SlotCache(self.n_layer, slots, self.n_head, max_len, head_dim, device, dtype)


def serving_lengths(params: dict[str, Any]) -> tuple[int, int]:
    """(prompt length of prefill, cache length of decode): `prompt_len` and `cache_len`, where
    0 means the longest that fits (seq_len, and seq_len - 1 for decode's one new token)."""
    seq_len = params["seq_len"]
    return params["prompt_len"] or seq_len, params["cache_len"] or seq_len - 1


class DecoderInstance(TrainableInstance):
    """A decoder-only language model on byte text: infer and train on a window, prefill a
    prompt into a KV cache, decode one token against a cache (the serving steps of every
    decoder workload). Subclasses build the model (`make_model`) and count its FLOPs and
    bytes; the model takes `(tokens, cache, last_only)` and has `new_cache(batch, len, dtype)`.
    """

    workload_name: str = "gpt"
    workload_modes: tuple[str, ...] = ("infer", "train", "prefill", "decode")

    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.p = params
        self.seq_len = params["seq_len"]
        self.prompt_len, self.cache_len = serving_lengths(params)
        model = ctx.materialize(lambda: self.make_model(params))
        self.attach(model, torch.optim.AdamW, lr=params["lr"])
        self._cache: KVCache | None = None

    def make_model(self, params: dict[str, Any]) -> nn.Module:
        """The model of this workload, built from its parameters (on the CPU, seeded)."""
        return GPT(
            params["vocab"],
            params["seq_len"],
            params["d_model"],
            params["n_layer"],
            params["n_head"],
            params["tied"],
        )

    def batch_at(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = byte_windows(index, self.ctx.batch_size, self.seq_len + 1).to(self.ctx.device)
        return windows[:, :-1], windows[:, 1:]

    def loss(self, batch: object) -> torch.Tensor:
        inputs, targets = batch  # type: ignore[misc]
        logits = self.train_forward(inputs).float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def cache(self) -> KVCache:
        """The KV cache of this instance (allocated on first use, in the case's dtype)."""
        if self._cache is None:
            with torch.inference_mode():
                self._cache = self.model.new_cache(
                    self.ctx.batch_size, self.seq_len, self.ctx.dtype
                )
        return self._cache

    def step(self, mode: str) -> Callable[[], None]:
        inputs, _ = self.batch
        if mode == "infer":
            return self.infer_step(inputs)
        if mode == "train":
            return self.train_step()
        if mode == "prefill":
            prompt = inputs[:, : self.prompt_len]
            cache = self.cache()

            def prefill() -> None:
                self.model.eval()
                with torch.inference_mode(), self.ctx.autocast():
                    cache.length = 0
                    self.last = self.forward(prompt, cache, last_only=True)

            return prefill
        if mode == "decode":
            length = self.cache_len
            cache = self.cache()
            self.model.eval()
            with torch.inference_mode(), self.ctx.autocast():
                cache.length = 0
                self.model(inputs[:, :length], cache)
            token = inputs[:, length : length + 1]

            def decode() -> None:
                with torch.inference_mode(), self.ctx.autocast():
                    cache.length = length
                    self.last = self.forward(token, cache)

            return decode
        raise mode_error(self.workload_name, mode, self.workload_modes)

    def server(self, max_batch: int) -> DecoderServer:
        """Continuous batching over `max_batch` per-request KV caches of seq_len positions."""
        return DecoderServer(self, max_batch)

    def serving_tokens(self, mode: str) -> tuple[int, int]:
        """(new tokens per sequence, tokens already cached) of a prefill or decode step."""
        return (self.prompt_len, 0) if mode == "prefill" else (1, self.cache_len)

    def forward_flops(self, queries: int, keys: int, head_rows: int | None = None) -> float:
        """FLOPs of one forward: `queries` new tokens per sequence attending to `keys`
        positions, the vocabulary head on `head_rows` rows (default every new token)."""
        p = self.p
        return flops.decoder_forward(
            self.ctx.batch_size,
            queries,
            keys,
            p["n_layer"],
            p["d_model"],
            4 * p["d_model"],
            p["vocab"],
            head_rows,
        )

    def flops(self, mode: str) -> float:
        if mode == "infer":
            return self.forward_flops(self.seq_len, self.seq_len)
        if mode == "train":
            return flops.training(self.forward_flops(self.seq_len, self.seq_len))
        if mode == "prefill":
            return self.forward_flops(self.prompt_len, self.prompt_len, self.ctx.batch_size)
        return self.forward_flops(1, self.cache_len + 1)

    def bytes_moved(self, mode: str) -> float | None:
        """Memory traffic of a prefill or decode step at this instance's real lengths
        (`flops.decoder_serving_bytes`); None for infer and train."""
        if mode not in ("prefill", "decode"):
            return None
        p, batch = self.p, self.ctx.batch_size
        new, cached = self.serving_tokens(mode)
        return flops.decoder_serving_bytes(
            batch,
            new,
            cached,
            p["n_layer"],
            p["d_model"],
            p["vocab"],
            p["tied"],
            self.ctx.dtype_name,
            head_rows=batch,
        )

    def work(self, mode: str) -> Work:
        tokens = {"prefill": self.prompt_len, "decode": 1}.get(mode, self.seq_len)
        return Work(items=self.ctx.batch_size * tokens, unit="tokens")

    def extra_metrics(self, mode: str, seconds_per_step: float) -> dict[str, float]:
        if mode == "decode":
            return {
                "time_per_output_token_s": seconds_per_step,
                "tokens_per_s": self.ctx.batch_size / seconds_per_step,
            }
        if mode == "prefill":
            return {
                "time_to_first_token_s": seconds_per_step,
                "tokens_per_s": self.ctx.batch_size * self.prompt_len / seconds_per_step,
            }
        return {}


PROMPTS = 64
"""Distinct prompts (byte windows of the corpus) the server cycles through."""


class DecoderServer(TokenServer):
    """Requests on a decoder instance (gpt, llama, moe): greedy generation with a SlotCache.
    Prompts are byte windows of the corpus; the next input of each slot is the argmax of its
    last logits, kept on the device so that no step waits for the host."""

    def __init__(self, instance: DecoderInstance, max_batch: int) -> None:
        super().__init__(max_batch, instance.seq_len)
        self.instance = instance
        ctx = instance.ctx
        self.prompts = byte_windows(7, PROMPTS, instance.seq_len).to(ctx.device)
        with torch.inference_mode():
            self.cache = instance.model.new_slots(max_batch, instance.seq_len, ctx.dtype)
            self.next = torch.zeros(max_batch, 1, dtype=torch.long, device=ctx.device)

    def _run(self, slots: list[int], tokens: torch.Tensor) -> None:
        instance = self.instance
        instance.model.eval()
        with torch.inference_mode(), instance.ctx.autocast():
            self.cache.use(slots)
            logits = instance.forward(tokens, self.cache, last_only=True)
            self.next[slots] = logits[:, -1].argmax(dim=-1, keepdim=True)
            instance.last = logits

    def prefill(self, slot: int, prompt_len: int, request: int) -> None:
        self.cache.reset(slot)
        self._run([slot], self.prompts[request % PROMPTS : request % PROMPTS + 1, :prompt_len])

    def decode(self, slots: list[int]) -> None:
        self._run(slots, self.next[slots])

    def release(self, slot: int) -> None:
        self.cache.reset(slot)


class GPTInstance(DecoderInstance):
    """The GPT workload's instance (the DecoderInstance defaults are GPT's)."""

    model: GPT


class GPTWorkload(Workload):
    name = "gpt"
    version = "3"  # 2: GPT-2 initialisation; 3: inference weights in the case dtype
    description = "GPT decoder (pre-norm, causal SDPA, KV cache) on byte text, AdamW"
    modes = ("infer", "train", "prefill", "decode")
    presets = {
        "tiny": {
            "batch": 2,
            "seq_len": 32,
            "d_model": 32,
            "n_layer": 2,
            "n_head": 2,
            "vocab": 256,
            "tied": True,
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
            "vocab": 256,
            "tied": True,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 1e-3,
        },
        "base": {  # GPT-2 124M shape (vocabulary padded to 50304 as in nanoGPT)
            "batch": 8,
            "seq_len": 1024,
            "d_model": 768,
            "n_layer": 12,
            "n_head": 12,
            "vocab": 50304,
            "tied": True,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 6e-4,
        },
    }

    non_negative: tuple[str, ...] = ("prompt_len", "cache_len")
    """Parameters that may be 0 (the rest must be > 0)."""

    def validate_params(self, params: dict[str, Any]) -> None:
        """prompt_len and cache_len may be 0 (derived from seq_len); the rest must be > 0."""
        name = self.name
        for key in self.non_negative:
            if params[key] < 0:
                hint = " (0: from seq_len)" if key in ("prompt_len", "cache_len") else ""
                raise WorkloadError(f"{name}: {key} must be >= 0{hint}, got {params[key]}.")
        super().validate_params({k: v for k, v in params.items() if k not in self.non_negative})
        if params["d_model"] % params["n_head"]:
            raise WorkloadError(
                f"{name}: d_model ({params['d_model']}) must be divisible by n_head "
                f"({params['n_head']})."
            )
        if params["vocab"] < BYTE_VOCAB:
            raise WorkloadError(
                f"{name}: vocab must be >= {BYTE_VOCAB} (the data is byte-level), "
                f"got {params['vocab']}."
            )
        seq_len = params["seq_len"]
        prompt_len, cache_len = serving_lengths(params)
        if prompt_len > seq_len:
            raise WorkloadError(
                f"{name}: prompt_len ({prompt_len}) must be <= seq_len ({seq_len})."
            )
        if cache_len >= seq_len or cache_len < 1:
            raise WorkloadError(
                f"{name}: cache_len ({cache_len}) must be in 1..seq_len - 1 ({seq_len - 1}): "
                "decode adds one token after the cached ones."
            )

    def build(self, ctx: BuildContext) -> Instance:
        return GPTInstance(ctx, ctx.params)
