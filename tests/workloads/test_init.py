"""Models start as their originals: a language model's first loss is about a uniform guess
over its vocabulary, diffusion and vision models start where their reference init puts them."""

from __future__ import annotations

import math

import pytest
import torch

from tests.workloads.helpers import build


def initial_loss(name: str, preset: str) -> tuple[float, int]:
    """(training loss on the first batch of freshly built weights, vocabulary size)."""
    instance, params = build(name, preset=preset)
    instance.model.train()
    with torch.no_grad():
        loss = instance.loss(instance.batch_at(0))  # type: ignore[attr-defined]
    return float(loss), int(params.get("vocab", 0))


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("name", ["gpt", "llama", "moe"])
def test_language_models_start_near_a_uniform_guess(name: str, preset: str) -> None:
    loss, vocab = initial_loss(name, preset)
    assert abs(loss - math.log(vocab)) <= 0.1 * math.log(vocab), (name, preset, loss)


def test_gpt_residual_projections_are_scaled_by_depth() -> None:
    instance, params = build("gpt", preset="small")
    model = instance.model
    depth = int(params["n_layer"])  # type: ignore[call-overload]
    proj = model.blocks[0].attn.proj.weight.std().item()
    qkv = model.blocks[0].attn.qkv.weight.std().item()
    assert qkv == pytest.approx(0.02, rel=0.1)
    assert proj == pytest.approx(0.02 / math.sqrt(2 * depth), rel=0.1)
    assert model.tok.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_dit_starts_with_zero_output_and_xavier_linears() -> None:
    instance, _ = build("dit", preset="small")
    model = instance.model
    assert not model.out.weight.any() and not model.modulations[0].weight.any()
    fan_out, fan_in = model.blocks[0].attn.qkv.weight.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert model.blocks[0].attn.qkv.weight.abs().max().item() <= bound
    assert not model.blocks[0].attn.qkv.bias.any()
    loss, _ = initial_loss("dit", "small")
    assert loss == pytest.approx(1.0, rel=0.1)  # zero prediction of unit-variance noise


def test_convnet_convolutions_are_kaiming_fan_out() -> None:
    instance, _ = build("convnet", preset="small")
    conv = instance.model.stem[0]
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.2)
