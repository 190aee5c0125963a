"""Analytic FLOP counts (multiply-add = 2 FLOPs) of the matmuls and convolutions of the
built-in workloads. Elementwise ops, norms and softmax are not counted, as in
`torch.utils.flop_counter.FlopCounterMode`, against which the tests check these formulas.

Attention is counted in full (QK^T and AV over every query-key pair, as in the PaLM /
nanoGPT formula 2N + 4*L*H*Q*T per token), even where a causal kernel skips about half.
A training step is counted as forward + backward = 3x forward, less the input-gradient
matmuls that are not needed for the first layer fed by data (`data_fed` FLOPs).
"""

from __future__ import annotations


def linear(rows: float, d_in: int, d_out: int) -> float:
    """A dense layer applied to `rows` vectors: 2 * rows * d_in * d_out."""
    return 2.0 * rows * d_in * d_out


def conv2d(c_in: int, c_out: int, kernel: int, h_out: int, w_out: int, batch: int = 1) -> float:
    """A (non-grouped) square-kernel convolution producing an h_out x w_out map."""
    return 2.0 * batch * c_in * c_out * kernel * kernel * h_out * w_out


def attention(batch: int, queries: int, keys: int, d_model: int) -> float:
    """Scores (Q K^T) and weighted values (A V) over all heads: 2 * 2 * B * Tq * Tk * d."""
    return 4.0 * batch * queries * keys * d_model


def transformer_layer(batch: int, queries: int, keys: int, d_model: int, d_ff: int) -> float:
    """One block: QKV and output projections, attention, and the two MLP matmuls."""
    rows = batch * queries
    projections = linear(rows, d_model, 3 * d_model) + linear(rows, d_model, d_model)
    mlp = linear(rows, d_model, d_ff) + linear(rows, d_ff, d_model)
    return projections + attention(batch, queries, keys, d_model) + mlp


def decoder_forward(
    batch: int,
    queries: int,
    keys: int,
    n_layer: int,
    d_model: int,
    d_ff: int,
    vocab: int,
    head_rows: int | None = None,
) -> float:
    """A decoder-only transformer forward on `queries` new tokens attending to `keys`
    positions (keys = queries without a cache; cache length + queries with one), with the
    vocabulary head on `head_rows` rows (default: every new token)."""
    rows = batch * queries if head_rows is None else head_rows
    layers = n_layer * transformer_layer(batch, queries, keys, d_model, d_ff)
    return layers + linear(rows, d_model, vocab)


def training(forward: float, data_fed: float = 0.0) -> float:
    """Forward + backward (2x forward: gradients of inputs and of weights), less the input
    gradient of the layer fed directly by data (`data_fed` = that layer's forward FLOPs)."""
    return 3.0 * forward - data_fed


ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}


def decoder_serving_bytes(
    batch: int,
    new_tokens: int,
    cached_tokens: int,
    n_layer: int,
    d_model: int,
    vocab: int,
    tied: bool,
    dtype: str,
    head_rows: int,
) -> float:
    """Bytes of memory traffic of one serving step (prefill or decode) of a decoder-only
    transformer, `new_tokens` per sequence entering a KV cache that already holds
    `cached_tokens`, with the vocabulary head applied to `head_rows` rows:

    - weights, read once: N = 12 * n_layer * d_model^2 + vocab * d_model (x2 untied) fp32
      master values (4 bytes each), plus, below fp32, the autocast copy written and read
      (2 * a bytes per weight, a = bytes per activation element of `dtype`);
    - KV cache: the new tokens' K and V written, and every position attended read,
      2 * n_layer * batch * (cached_tokens + new_tokens) * d_model elements
      (prefill: the prompt written; decode: cache + 1 read);
    - activations: about 16 * d_model elements per new token per layer (norms, q/k/v,
      attention output, projection, the 4x MLP hidden written and read, residuals), plus
      the logits (2 * head_rows * vocab, written and read).

    Caches are ignored: on a CPU a small model's weights can stay in L2/L3, which puts its
    points to the left of where they really are."""
    act = ELEMENT_BYTES[dtype]
    weights = 12 * n_layer * d_model * d_model + vocab * d_model * (1 if tied else 2)
    weight_bytes = weights * 4 + (weights * 2 * act if act < 4 else 0)
    kv = 2 * n_layer * batch * (cached_tokens + new_tokens) * d_model
    activations = batch * new_tokens * n_layer * 16 * d_model + 2 * head_rows * vocab
    return float(weight_bytes + (kv + activations) * act)
