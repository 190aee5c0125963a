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
    """Bytes of memory traffic of one serving step (prefill or decode) of a GPT-style
    decoder-only transformer, `new_tokens` per sequence entering a KV cache that already
    holds `cached_tokens`, with the vocabulary head applied to `head_rows` rows: `serving_bytes`
    with N = 12 * n_layer * d_model^2 + vocab * d_model (x2 untied) weights, K and V of width
    d_model, and about 16 * d_model activation elements per new token per layer (norms,
    q/k/v, attention output, projection, the 4x MLP hidden written and read, residuals)."""
    weights = 12 * n_layer * d_model * d_model + vocab * d_model * (1 if tied else 2)
    return serving_bytes(
        weights,
        batch,
        new_tokens,
        cached_tokens,
        n_layer,
        kv_width=d_model,
        activation_width=16 * d_model,
        vocab=vocab,
        dtype=dtype,
        head_rows=head_rows,
    )


def serving_bytes(
    weights: float,
    batch: int,
    new_tokens: int,
    cached_tokens: int,
    n_layer: int,
    *,
    kv_width: int,
    activation_width: float,
    vocab: int,
    dtype: str,
    head_rows: int,
) -> float:
    """Bytes of memory traffic of one serving step (prefill or decode) of a decoder-only
    transformer, `new_tokens` per sequence entering a KV cache that already holds
    `cached_tokens`, with the vocabulary head applied to `head_rows` rows:

    - `weights` parameters read once, in `dtype` (a bytes each, a = bytes per element of
      `dtype`): a serving step is an inference case, whose weights are built in the case
      dtype (workloads.base.weight_dtype), so autocast makes no copy of them;
    - KV cache: the new tokens' K and V written, and every position attended read,
      2 * n_layer * batch * (cached_tokens + new_tokens) * kv_width elements (kv_width =
      KV heads x head size; prefill: the prompt written; decode: cache + 1 read);
    - activations: `activation_width` elements per new token per layer, plus the logits
      (2 * head_rows * vocab, written and read).

    Caches are ignored: on a CPU a small model's weights can stay in L2/L3, which puts its
    points to the left of where they really are."""
    act = ELEMENT_BYTES[dtype]
    weight_bytes = weights * act
    kv = 2 * n_layer * batch * (cached_tokens + new_tokens) * kv_width
    activations = batch * new_tokens * n_layer * activation_width + 2 * head_rows * vocab
    return float(weight_bytes + (kv + activations) * act)


def gqa_attention_layer(
    batch: int, queries: int, keys: int, d_model: int, n_head: int, n_kv_head: int
) -> float:
    """Grouped-query attention of one layer: Q and output projections (d_model wide), K and V
    projections (n_kv_head heads of d_model / n_head), and attention over every query-key
    pair of all n_head query heads."""
    rows = batch * queries
    kv_width = d_model // n_head * n_kv_head
    projections = 2 * linear(rows, d_model, d_model) + 2 * linear(rows, d_model, kv_width)
    return projections + attention(batch, queries, keys, d_model)


def swiglu(rows: float, d_model: int, d_ff: int) -> float:
    """A SwiGLU MLP (gate and up projections to d_ff, down projection back) on `rows`."""
    return 3 * linear(rows, d_model, d_ff)


def moe_mlp(
    rows: float, d_model: int, n_expert: int, top_k: int, d_expert: int, d_shared: int
) -> float:
    """A mixture-of-experts MLP on `rows` tokens: the router (d_model -> n_expert), the
    shared experts (one SwiGLU of width d_shared; 0: none) and the `top_k` active routed
    SwiGLU experts of width d_expert per token. Experts a token is not routed to cost
    nothing; tokens dropped by a capacity limit are still counted (nominal work)."""
    shared = swiglu(rows, d_model, d_shared) if d_shared else 0.0
    return linear(rows, d_model, n_expert) + shared + swiglu(rows * top_k, d_model, d_expert)
