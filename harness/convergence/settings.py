"""Per-preset settings of the converge mode and the workloads it trains."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.errors import BenchError

CONVERGE_MODE = "converge"
"""The mode name a run plans converge cases under (`bench run --mode converge`)."""

CONVERGE_WORKLOADS: tuple[str, ...] = ("mlp", "gpt", "llama", "moe", "convnet", "dit")
"""Workloads that train to a target (those with real data and a training step)."""

CONVERGE_SUITE: tuple[str, ...] = ("mlp", "gpt", "llama")
"""What `--mode converge` trains when no workload is named: the tiny preset of these fits the
cost budget (docs/convergence.md); name moe, convnet or dit to train them."""


class ConvergeSettings(BaseModel):
    """How a converge case trains: seeds, the reference step whose eval loss is the target,
    the eval interval and batches, the step cap, and an optional soak of the first seed."""

    seeds: int = Field(3, ge=1)
    target_step: int = Field(100, ge=1)
    """The reference's median eval loss (over seeds) at this step is the target."""
    eval_every: int = Field(10, ge=1)
    eval_batches: int = Field(4, ge=1)
    """Held-out batches of each eval (indices training never reaches: EVAL_OFFSET + i)."""
    cap_factor: float = Field(3.0, gt=1.0)
    """The step cap is cap_factor x target_step: a device needing more is `not_reached`."""
    soak_steps: int | None = Field(None, ge=1)
    """The first device seed keeps training to this many steps after the target (stability)."""
    soak_s: float | None = Field(None, gt=0)
    """...or for this many seconds of training, whichever ends first (both None: no soak)."""

    @property
    def step_cap(self) -> int:
        return int(self.cap_factor * self.target_step)


CONVERGE_PRESETS: dict[str, ConvergeSettings] = {
    "tiny": ConvergeSettings(seeds=3, target_step=100, eval_every=10, eval_batches=4),
    "small": ConvergeSettings(seeds=5, target_step=300, eval_every=20, eval_batches=8),
}
"""`base` trains at the small settings."""


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
    base = CONVERGE_PRESETS.get(preset, CONVERGE_PRESETS["small"])
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
