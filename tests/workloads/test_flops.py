"""Analytic FLOPs against torch.utils.flop_counter.FlopCounterMode on the tiny presets.

CPU SDPA kernels count 0 FLOPs in the counter, so attention runs on the math backend here;
that backend computes every query-key pair, which is how flops.attention counts too.
Tolerance: 5% (the counter sees only matmuls/convolutions, as the formulas do).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tests.workloads.helpers import build

TOLERANCE = 0.05


def counted(fn: Callable[[], None]) -> float:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


CASES = [
    ("mlp", "infer"),
    ("mlp", "train"),
    ("gpt", "infer"),
    ("gpt", "train"),
    ("gpt", "prefill"),
    ("gpt", "decode"),
    ("convnet", "infer"),
    ("convnet", "train"),
    ("dit", "infer"),
    ("dit", "train"),
    ("dit", "sample"),
    ("matmul", "probe"),
    ("llama", "infer"),
    ("llama", "train"),
    ("llama", "prefill"),
    ("llama", "decode"),
    ("moe", "infer"),
    ("moe", "prefill"),
    ("moe", "decode"),
]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_analytic_flops_match_the_flop_counter(name: str, mode: str) -> None:
    instance, _ = build(name)
    step = instance.step(mode)  # decode fills its cache here, outside the count
    analytic = instance.flops(mode)
    measured = counted(step)
    assert analytic == pytest.approx(measured, rel=TOLERANCE), (analytic, measured)


def test_untied_head_and_bottleneck_blocks_are_counted_too() -> None:
    gpt, _ = build("gpt", tied="false")
    assert gpt.flops("train") == pytest.approx(counted(gpt.step("train")), rel=TOLERANCE)
    resnet, _ = build("convnet", block="bottleneck", stages="1-2", image_size="128")
    for mode in ("infer", "train"):
        assert resnet.flops(mode) == pytest.approx(counted(resnet.step(mode)), rel=TOLERANCE)


def test_moe_training_flops_count_active_experts_only() -> None:
    """Without a capacity limit every routed slot is computed: the counter sees exactly the
    top_k experts per token (with one, dropped slots are computed less than counted)."""
    instance, _ = build("moe", capacity_factor="0")
    assert instance.flops("train") == pytest.approx(counted(instance.step("train")), rel=1e-6)
    wider, params = build("moe", capacity_factor="0", n_expert="16")
    # Eight more experts cost only their router columns (x3 for training), on the one MoE
    # layer of the tiny preset.
    rows = params["batch"] * params["seq_len"]
    router = 3 * 2 * rows * params["d_model"] * 8
    assert wider.flops("train") - instance.flops("train") == router


@pytest.mark.parametrize("name", ["gpt", "mlp", "llama", "moe"])
def test_train_is_three_times_infer(name: str) -> None:
    instance, _ = build(name)
    assert instance.flops("train") / instance.flops("infer") == pytest.approx(3.0, abs=0.3)


def test_base_gpt_is_the_gpt2_124m_shape_on_the_meta_device() -> None:
    from workloads.gpt import GPT

    with torch.device("meta"):
        model = GPT(50304, 1024, 768, 12, 12, tied=True)
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(124.4e6, rel=0.01)


def test_base_gpt_forward_flops_match_the_counter_on_the_meta_device() -> None:
    from workloads import flops
    from workloads.gpt import GPT

    with torch.device("meta"):
        model = GPT(50304, 1024, 768, 12, 12, tied=True)
        tokens = torch.zeros(1, 1024, dtype=torch.long)
        measured = counted(lambda: model(tokens))
    assert flops.decoder_forward(1, 1024, 1024, 12, 768, 3072, 50304) == pytest.approx(
        measured, rel=TOLERANCE
    )


def test_base_convnet_is_the_resnet50_shape_with_its_known_flops() -> None:
    from workloads.convnet import ResNet

    with torch.device("meta"):
        model = ResNet("bottleneck", [3, 4, 6, 3], 64, 224, 1000)
        images = torch.zeros(1, 3, 224, 224)
        measured = counted(lambda: model(images))
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision resnet50
    assert model.flops_forward == pytest.approx(8.18e9, rel=0.01)  # 4.09 GMACs per image
    assert model.flops_forward == pytest.approx(measured, rel=TOLERANCE)


def test_base_dit_forward_flops_match_the_counter_on_the_meta_device() -> None:
    from workloads.dit import DiT, DiTWorkload, forward_flops

    params = DiTWorkload().resolve_params("base", {})
    with torch.device("meta"):
        model = DiT(32, 4, 2, 768, 12, 12)
        x, t = torch.zeros(1, 4, 32, 32), torch.zeros(1)
        measured = counted(lambda: model(x, t))
    analytic, _ = forward_flops(params, batch=1)
    assert analytic == pytest.approx(measured, rel=TOLERANCE)
    assert analytic == pytest.approx(2 * 23e9, rel=0.05)  # DiT-B/2: ~23 GMACs per image
