"""Every built-in workload builds and steps in each of its modes and dtypes (tiny presets),
training lowers the loss on a fixed batch, and unknown modes are refused clearly."""

from __future__ import annotations

import pytest
import torch

from tests.workloads.helpers import build
from workloads.base import WorkloadError
from workloads.registry import BUILTINS

SINGLE_PROCESS = {name: cls for name, cls in BUILTINS.items() if name != "allreduce"}
"""allreduce needs a process group: tests/integration/test_distributed.py steps it."""

CASES = [
    (name, mode, dtype)
    for name, cls in SINGLE_PROCESS.items()
    for mode in cls.modes
    for dtype in ("fp32", "bf16", "fp16")
]


@pytest.mark.parametrize(("name", "mode", "dtype"), CASES)
def test_each_mode_and_dtype_steps_with_finite_output(name: str, mode: str, dtype: str) -> None:
    instance, _ = build(name, dtype)
    step = instance.step(mode)
    step()
    step()
    assert instance.nonfinite_reason() is None
    work = instance.work(mode)
    assert work.items > 0
    flops = instance.flops(mode)
    assert flops is None or flops > 0
    if name == "bandwidth":
        assert instance.bytes_moved(mode) == work.items


@pytest.mark.parametrize("name", ["mlp", "gpt", "convnet", "dit", "llama", "moe"])
def test_a_few_train_steps_on_a_fixed_batch_lower_the_loss(name: str) -> None:
    instance, _ = build(name)
    step = instance.step("train")
    losses = []
    for _ in range(8):
        step()
        assert instance.last is not None
        losses.append(float(instance.last))
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", ["mlp", "gpt", "convnet", "dit", "llama", "moe"])
def test_fidelity_step_uses_identical_weights_and_batches(name: str) -> None:
    first, _ = build(name)
    second, _ = build(name)
    a = [first.fidelity_step(i) for i in range(2)]
    b = [second.fidelity_step(i) for i in range(2)]
    assert a == b
    assert all(s.grad_norm > 0 for s in a)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("gpt", "sample"),
        ("llama", "sample"),
        ("moe", "probe"),
        ("convnet", "decode"),
        ("dit", "prefill"),
        ("matmul", "infer"),
        ("bandwidth", "train"),
    ],
)
def test_a_mode_the_workload_lacks_is_a_clear_error(name: str, mode: str) -> None:
    instance, _ = build(name)
    with pytest.raises(WorkloadError, match=f"workload '{name}' has no mode '{mode}'; it has: "):
        instance.step(mode)


def test_dit_sample_runs_the_given_number_of_steps() -> None:
    instance, params = build("dit", steps="3")
    assert params["steps"] == 3
    one, _ = build("dit")
    assert instance.flops("sample") == 3 * instance.flops("infer")
    assert one.extra_metrics("sample", 0.5)["seconds_per_image"] == 0.25


def test_matmul_given_shape_and_sweep() -> None:
    rect, _ = build("matmul", m="64", k="32", n="16")
    rect.step("probe")()
    assert rect.flops("probe") == 2 * 64 * 32 * 16
    swept, _ = build("matmul", sweep="true", max_n="512", sweep_budget_s="0.5")
    extra = swept.extra_metrics("probe", 1.0)
    assert extra["sweep"] == 1.0 and extra["shapes_tried"] >= 1
    assert swept.flops("probe") == 2 * extra["m"] * extra["k"] * extra["n"]


def test_matmul_runs_in_the_case_dtype_without_autocast() -> None:
    instance, _ = build("matmul", "bf16")
    instance.step("probe")()
    assert instance.c.dtype == torch.bfloat16  # type: ignore[attr-defined]


def test_convnet_channels_last_keeps_the_memory_format() -> None:
    instance, _ = build("convnet", channels_last="true")
    images, _ = instance.batch  # type: ignore[attr-defined]
    assert images.is_contiguous(memory_format=torch.channels_last)
    instance.step("train")()
    assert instance.nonfinite_reason() is None


def test_matmul_sustained_mode_reports_burst_sustained_and_their_ratio() -> None:
    held, _ = build("matmul", n="64", sustain_s="0.05", sustain_windows="3")
    extra = held.extra_metrics("probe", 1.0)
    assert extra["sustain_windows"] == 3.0 and extra["sustain_s"] > 0
    assert extra["burst_flops"] > 0 and extra["sustained_flops"] > 0
    assert extra["sustain_ratio"] == extra["sustained_flops"] / extra["burst_flops"]
    assert extra["sustain_min_flops"] <= min(extra["burst_flops"], extra["sustained_flops"])
    plain, _ = build("matmul")
    assert "burst_flops" not in plain.extra_metrics("probe", 1.0)
    with pytest.raises(WorkloadError, match="sustain_s must be >= 0 seconds"):
        build("matmul", sustain_s="-1")
