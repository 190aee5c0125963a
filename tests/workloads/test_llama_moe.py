"""The llama and moe decoders: KV-cache serving gives the full forward's logits, grouped-query
attention is multi-head attention with shared K/V heads, the base presets have the published
parameter counts, and the MoE router's capacity limit and load-balancing loss behave."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.workloads.helpers import build
from workloads.llama import GroupedQueryAttention, Llama, LlamaWorkload, SwiGLU, parameter_count
from workloads.moe import MoEMLP, MoEWorkload, build_moe, moe_layers, parameter_counts

TOLERANCE = {"fp32": 1e-4, "bf16": 1.6e-2, "fp16": 2e-3}
"""Per dtype: about two units in the last place of logits of magnitude ~2 (bf16 has 8
significant bits, fp16 11); the cache stores K and V in the case's dtype."""


@pytest.mark.parametrize("name", ["llama", "moe"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_decode_logits_equal_the_full_forward_at_the_last_position(name: str, dtype: str) -> None:
    instance, params = build(name, dtype)
    model = instance.model.eval()  # type: ignore[attr-defined]
    tokens, _ = instance.batch  # type: ignore[attr-defined]
    seq_len = params["seq_len"]
    with torch.inference_mode(), instance.ctx.autocast():  # type: ignore[attr-defined]
        full = model(tokens)
        cache = instance.cache()  # type: ignore[attr-defined]
        cache.length = 0
        steps = [model(tokens[:, :20], cache)]
        steps += [model(tokens[:, i : i + 1], cache) for i in range(20, seq_len)]
    served = torch.cat(steps, dim=1).float()
    tol = TOLERANCE[dtype]
    assert cache.length == seq_len
    torch.testing.assert_close(served[:, -1], full[:, -1].float(), rtol=tol, atol=tol)
    torch.testing.assert_close(served, full.float(), rtol=tol, atol=tol)


def test_gqa_with_as_many_kv_heads_as_query_heads_is_plain_multi_head_attention() -> None:
    torch.manual_seed(0)
    d_model, n_head, tokens = 32, 4, 10
    gqa = GroupedQueryAttention(d_model, n_head, n_kv_head=n_head)
    mha = torch.nn.MultiheadAttention(d_model, n_head, bias=False, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([gqa.q.weight, gqa.k.weight, gqa.v.weight]))
        mha.out_proj.weight.copy_(gqa.o.weight)
    x = torch.randn(2, tokens, d_model)
    no_rotation = torch.ones(tokens, d_model // n_head), torch.zeros(tokens, d_model // n_head)
    causal = torch.ones(tokens, tokens, dtype=torch.bool).triu(1)
    expected, _ = mha(x, x, x, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(gqa(x, *no_rotation), expected, rtol=1e-5, atol=1e-6)


def test_gqa_equals_multi_head_attention_with_each_kv_head_repeated_over_its_group() -> None:
    torch.manual_seed(0)
    d_model, n_head, n_kv_head = 32, 4, 2
    grouped = GroupedQueryAttention(d_model, n_head, n_kv_head)
    full = GroupedQueryAttention(d_model, n_head, n_head)
    head_dim, group = d_model // n_head, n_head // n_kv_head

    def repeat(weight: torch.Tensor) -> torch.Tensor:
        heads = weight.view(n_kv_head, head_dim, d_model)
        return heads.repeat_interleave(group, dim=0).reshape(-1, d_model)

    with torch.no_grad():
        full.q.weight.copy_(grouped.q.weight)
        full.o.weight.copy_(grouped.o.weight)
        full.k.weight.copy_(repeat(grouped.k.weight))
        full.v.weight.copy_(repeat(grouped.v.weight))
    model = Llama(256, 16, d_model, 1, n_head, n_kv_head, lambda _: SwiGLU(d_model, 64))
    x = torch.randn(2, 16, d_model)
    torch.testing.assert_close(
        grouped(x, model.cos, model.sin), full(x, model.cos, model.sin), rtol=1e-5, atol=1e-6
    )


def test_base_llama_is_llama_3_2_1b_on_the_meta_device() -> None:
    params = LlamaWorkload().resolve_params("base", {})
    with torch.device("meta"):
        model = Llama(
            params["vocab"],
            params["seq_len"],
            params["d_model"],
            params["n_layer"],
            params["n_head"],
            params["n_kv_head"],
            lambda _: SwiGLU(params["d_model"], params["d_ff"]),
            tied=params["tied"],
        )
    # Llama-3.2-1B: 1,235,814,400 parameters (Meta's "1.24B"), embeddings tied.
    assert parameter_count(model) == 1_235_814_400


def test_base_moe_is_shaped_like_deepseek_v2_lite_on_the_meta_device() -> None:
    params = MoEWorkload().resolve_params("base", {})
    with torch.device("meta"):
        model = build_moe(params)
    total, active = parameter_counts(params)
    assert parameter_count(model) == total
    # DeepSeek-V2-Lite: 15.7B total, 2.4B activated (its MLA attention is GQA here).
    assert total == pytest.approx(15.7e9, rel=0.01)
    assert active == pytest.approx(2.4e9, rel=0.02)
    assert len(moe_layers(model)) == 26


def test_capacity_drops_token_slots_in_training_only() -> None:
    torch.manual_seed(0)
    layer = MoEMLP(16, n_expert=4, top_k=2, d_expert=8, n_shared=0, capacity_factor=0.5)
    x = torch.randn(1, 32, 16)
    layer.train()
    layer(x)
    assert layer.capacity(32) == 8
    # 64 slots, at most 8 per expert kept: at least 32 dropped.
    assert layer.dropped is not None and int(layer.dropped) >= 32
    layer.eval()
    layer(x)
    assert int(layer.dropped) == 0
    unlimited = MoEMLP(16, n_expert=4, top_k=2, d_expert=8, n_shared=0, capacity_factor=0.0)
    unlimited.train()
    unlimited(x)
    assert unlimited.dropped is not None and int(unlimited.dropped) == 0


def test_a_dropped_slot_contributes_nothing() -> None:
    torch.manual_seed(0)
    layer = MoEMLP(8, n_expert=2, top_k=1, d_expert=4, n_shared=0, capacity_factor=0.5)
    x = torch.randn(1, 8, 8)
    layer.train()
    out = layer(x)[0]
    chosen = layer.last_experts[:, 0]  # type: ignore[index]
    # capacity ceil(0.5 * 8 * 1 / 2) = 2: each expert's first two tokens are kept.
    kept = torch.zeros(8, dtype=torch.bool)
    for expert in range(2):
        kept[(chosen == expert).nonzero().squeeze(-1)[:2]] = True
    assert torch.equal(out.abs().sum(-1) > 0, kept)


def test_the_training_loss_adds_the_weighted_load_balancing_loss() -> None:
    instance, _ = build("moe", aux_alpha="0.5")
    batch = instance.batch  # type: ignore[attr-defined]
    instance.model.train()  # type: ignore[attr-defined]
    total = instance.loss(batch)  # type: ignore[attr-defined]
    aux = [m.aux_loss for m in moe_layers(instance.model)]  # type: ignore[attr-defined]
    inputs, targets = batch
    logits = instance.model(inputs)  # type: ignore[attr-defined]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    assert all(a is not None and a.requires_grad for a in aux)
    expected = ce + 0.5 * torch.stack(aux).sum()  # type: ignore[arg-type]
    torch.testing.assert_close(total, expected)


def test_moe_reports_active_and_total_parameters_and_dropped_slots() -> None:
    instance, _ = build("moe")
    instance.step("train")()
    extra = instance.extra_metrics("train", 0.1)
    assert extra["params_active"] < extra["params_total"]
    assert extra["params_total"] == parameter_count(instance.model)  # type: ignore[attr-defined]
    assert 0 <= extra["dropped_fraction"] <= 1
    assert extra["dropped_tokens"] >= 0


@pytest.mark.parametrize("name", ["llama", "moe"])
def test_prefill_is_more_compute_bound_than_decode(name: str) -> None:
    instance, _ = build(name, preset="small")
    intensity = {m: instance.flops(m) / instance.bytes_moved(m) for m in ("prefill", "decode")}
    assert intensity["prefill"] > 10 * intensity["decode"]
    assert instance.bytes_moved("train") is None


@pytest.mark.parametrize("name", ["llama", "moe"])
def test_slot_cache_rows_rotate_and_attend_at_their_own_positions(name: str) -> None:
    """Continuous batching: two requests at different lengths decode in one batch; each row's
    logits equal the full forward of its own prefix (rotary angles are per row)."""
    instance, params = build(name)
    model = instance.model.eval()  # type: ignore[attr-defined]
    tokens, _ = instance.batch  # type: ignore[attr-defined]
    with torch.inference_mode():
        slots = model.new_slots(2, params["seq_len"], torch.float32)
        slots.use([0])
        model(tokens[:1, :8], slots)
        slots.use([1])
        model(tokens[1:, :5], slots)
        slots.use([0, 1])
        step = torch.cat([tokens[:1, 8:9], tokens[1:, 5:6]])
        served = model(step, slots)[:, -1]
        first = model(tokens[:1, :9])[:, -1]
        second = model(tokens[1:, :6])[:, -1]
    torch.testing.assert_close(served, torch.cat([first, second]), rtol=1e-4, atol=1e-4)
