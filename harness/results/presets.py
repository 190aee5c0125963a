"""Presets: every per-preset default of a run in one table (no torch, no fallbacks).

A preset names a size (the workloads' own parameters, `workloads.*.presets`) and, here, how
hard the harness works on it: the measurement budget, rounds, interleaving, timeouts, the
default suite, the fidelity check's size and the scenario defaults. A name that is not in
the table is refused where the config is built (`RunConfig.preset` is a `PresetName`).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

PresetName = Literal["tiny", "small", "base"]
"""The presets a run may name: tiny keeps CI fast, small is the CPU default, base is what a
GPU user would run."""

PRESET_NAMES: tuple[PresetName, ...] = get_args(PresetName)

Interleave = Literal["run", "workload", "case"]
"""How rounds interleave: across every case of the run (`run`: all built cases stay alive in
the worker), one workload group at a time (`workload`: the cache is emptied between groups,
so only one group's modes are alive at once: for big presets), or not at all (`case`: each
case's rounds back to back, one built case alive at a time: for models of which the device
holds one copy only)."""


class MeasureSettings(BaseModel):
    """How hard `measure` works on one case."""

    warmup_s: float = Field(0.1, ge=0)
    warmup_iterations: int = Field(2, ge=0)
    min_samples: int = Field(10, ge=3)
    max_samples: int = Field(1000, ge=3)
    max_time_s: float = Field(2.0, gt=0)
    precision: float = Field(0.01, gt=0)
    min_sample_s: float = Field(1e-3, gt=0)


class LatencyTargets(BaseModel):
    """p99 bounds the server scenario must meet (seconds): time to first token and time per
    output token for LLMs, request latency for the others."""

    ttft_s: float = Field(gt=0)
    tpot_s: float = Field(gt=0)
    latency_s: float = Field(gt=0)


class ScenarioDefaults(BaseModel):
    """What a scenario run uses where its settings say None (docs/scenarios.md)."""

    model_config = ConfigDict(frozen=True)

    targets: LatencyTargets
    max_wait_s: float = Field(ge=0)
    """Longest an item request waits for a fuller batch."""
    requests: int = Field(ge=10)
    """Requests per measured point at least."""
    search_steps: int = Field(ge=1)
    """Bisection steps of the server's max-rate search."""
    time_budget_s: float = Field(gt=0)
    """Wall time the server search may take."""
    min_duration_s: float = Field(gt=0)
    """A server point issues at least rate x this many requests."""


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


class Preset(BaseModel):
    """Every default a run takes from its preset; each is overridable in RunConfig."""

    model_config = ConfigDict(frozen=True)

    measure: MeasureSettings
    rounds: int = Field(ge=1)
    """Rounds each case is measured in: enough for a between-round CI, fewer where cases are
    long."""
    interleave: Interleave
    case_timeout_s: float = Field(gt=0)
    fidelity_timeout_factor: float = Field(gt=0)
    """A fidelity check trains about three runs' worth of steps: it gets this many case
    timeouts unless its own timeout is given."""
    suite: tuple[str, ...]
    """The workloads a run measures when none is named (those registered)."""
    fidelity_preset: PresetName
    """The preset fidelity checks train at (a larger run checks at a smaller one, to keep the
    check bounded)."""
    fidelity_steps: int = Field(ge=1)
    """Training steps of each fidelity check."""
    scenario: ScenarioDefaults
    converge: ConvergeSettings
    """How `--mode converge` trains (harness.convergence); base trains at small's settings."""
    converge_timeout_factor: float = Field(20.0, gt=0)
    """A converge case trains 2-3 runs per seed to the target (hundreds of steps): it gets
    this many case timeouts."""


DEFAULT_SUITE: tuple[str, ...] = ("mlp", "convnet", "gpt", "dit", "matmul", "bandwidth")

PRESETS: dict[PresetName, Preset] = {
    "tiny": Preset(
        measure=MeasureSettings(warmup_s=0.05, min_samples=10, max_time_s=0.5),
        rounds=5,
        interleave="run",
        case_timeout_s=60.0,
        fidelity_timeout_factor=3.0,
        # The tiny suite adds the llama and moe decoders (at small they would take the CPU
        # default run past its time budget; name them to run them).
        suite=(*DEFAULT_SUITE[:3], "llama", "moe", *DEFAULT_SUITE[3:]),
        fidelity_preset="tiny",
        fidelity_steps=20,
        converge=ConvergeSettings(seeds=3, target_step=100, eval_every=10, eval_batches=4),
        scenario=ScenarioDefaults(
            targets=LatencyTargets(ttft_s=0.05, tpot_s=0.02, latency_s=0.05),
            max_wait_s=0.002,
            requests=64,
            search_steps=4,
            time_budget_s=30.0,
            min_duration_s=0.5,
        ),
    ),
    "small": Preset(
        measure=MeasureSettings(warmup_s=0.2, min_samples=10, max_time_s=2.0),
        rounds=5,
        interleave="run",
        case_timeout_s=180.0,
        fidelity_timeout_factor=3.0,
        suite=DEFAULT_SUITE,
        fidelity_preset="small",
        fidelity_steps=100,
        converge=ConvergeSettings(seeds=5, target_step=300, eval_every=20, eval_batches=8),
        scenario=ScenarioDefaults(
            targets=LatencyTargets(ttft_s=0.2, tpot_s=0.05, latency_s=0.2),
            max_wait_s=0.005,
            requests=200,
            search_steps=5,
            time_budget_s=120.0,
            min_duration_s=2.0,
        ),
    ),
    "base": Preset(
        measure=MeasureSettings(warmup_s=1.0, min_samples=20, max_time_s=10.0),
        rounds=3,
        # Base models are too big to keep all alive at once.
        interleave="workload",
        case_timeout_s=900.0,
        fidelity_timeout_factor=3.0,
        suite=DEFAULT_SUITE,
        fidelity_preset="small",
        fidelity_steps=100,
        converge=ConvergeSettings(seeds=5, target_step=300, eval_every=20, eval_batches=8),
        # MLPerf's server bounds for LLMs (Llama 2 70B: TTFT 2 s, TPOT 200 ms).
        scenario=ScenarioDefaults(
            targets=LatencyTargets(ttft_s=2.0, tpot_s=0.2, latency_s=1.0),
            max_wait_s=0.01,
            requests=1000,
            search_steps=6,
            time_budget_s=900.0,
            min_duration_s=10.0,
        ),
    ),
}
"""The defaults of each preset (a name outside PresetName is refused where a RunConfig is
built, so a run never looks one up here)."""
