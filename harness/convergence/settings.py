"""Per-preset settings of the converge mode and the workloads it trains."""

from __future__ import annotations

from harness.errors import BenchError
from harness.results.presets import PRESETS, ConvergeSettings

CONVERGE_MODE = "converge"
"""The mode name a run plans converge cases under (`bench run --mode converge`)."""

CONVERGE_WORKLOADS: tuple[str, ...] = ("mlp", "gpt", "llama", "moe", "convnet", "dit")
"""Workloads that train to a target (those with real data and a training step)."""

CONVERGE_SUITE: tuple[str, ...] = ("mlp", "gpt", "llama")
"""What `--mode converge` trains when no workload is named: the tiny preset of these fits the
cost budget (docs/convergence.md); name moe, convnet or dit to train them."""


def converge_settings(
    preset: str,
    seeds: int | None = None,
    target_step: int | None = None,
    soak_steps: int | None = None,
    soak_s: float | None = None,
) -> ConvergeSettings:
    """The preset's settings with the run's overrides (`--seeds`, `--soak-steps`, `--soak-s`)."""
    options = (
        ("--seeds", seeds),
        ("--target-step", target_step),
        ("--soak-steps", soak_steps),
        ("--soak-s", soak_s),
    )
    for name, value in options:
        if value is not None and value <= 0:
            raise BenchError(f"{name} must be > 0, got {value}.")
    base = PRESETS[preset].converge  # type: ignore[index]
    step = target_step or base.target_step
    if step % base.eval_every:
        raise BenchError(
            f"--target-step must be a multiple of the eval interval {base.eval_every} "
            f"at the {preset} preset, got {step}."
        )
    return base.model_copy(
        update={
            "seeds": seeds or base.seeds,
            "target_step": step,
            "soak_steps": soak_steps,
            "soak_s": soak_s,
        }
    )
