"""Run configuration: what the user asked for, validated and stored with the results."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Isolation = Literal["none", "worker", "case"]
"""Where cases run: in this process, in one reused worker process, or a fresh process each."""

Interleave = Literal["run", "workload"]
"""How rounds interleave: across every case of the run (`run`: all built cases stay alive in
the worker), or one workload group at a time (`workload`: the cache is emptied between
groups, so only one model's cases are alive at once: for big presets)."""


class MeasureSettings(BaseModel):
    """How hard `measure` works on one case."""

    warmup_s: float = Field(0.1, ge=0)
    warmup_iterations: int = Field(2, ge=0)
    min_samples: int = Field(10, ge=3)
    max_samples: int = Field(1000, ge=3)
    max_time_s: float = Field(2.0, gt=0)
    precision: float = Field(0.01, gt=0)
    min_sample_s: float = Field(1e-3, gt=0)


PRESET_MEASURE: dict[str, MeasureSettings] = {
    "tiny": MeasureSettings(warmup_s=0.05, min_samples=10, max_time_s=0.5),
    "small": MeasureSettings(warmup_s=0.2, min_samples=10, max_time_s=2.0),
    "base": MeasureSettings(warmup_s=1.0, min_samples=20, max_time_s=10.0),
}
"""Per-preset defaults: tiny keeps CI fast, base is what a GPU user would run."""

PRESET_ROUNDS: dict[str, int] = {"tiny": 5, "small": 5, "base": 3}
"""Default rounds per preset: enough rounds for a between-round CI; fewer where cases are long."""

PRESET_INTERLEAVE: dict[str, Interleave] = {"tiny": "run", "small": "run", "base": "workload"}
"""Default interleaving per preset: base models are too big to keep all alive at once."""

PRESET_CASE_TIMEOUT_S: dict[str, float] = {"tiny": 60.0, "small": 180.0, "base": 900.0}


CONVERGE_TIMEOUT_FACTOR = 20.0
"""A converge case trains 2-3 runs per seed to the target (hundreds of steps): it gets this
many case timeouts."""

FIDELITY_TIMEOUT_FACTOR = 3.0
"""A fidelity check trains about three runs' worth of steps: by default it gets this many
case timeouts."""


ScenarioName = Literal["single-stream", "offline", "server"]
SCENARIOS: tuple[ScenarioName, ...] = ("single-stream", "offline", "server")
LengthKind = Literal["fixed", "uniform", "lognormal"]


class LengthSpec(BaseModel):
    """How LLM request lengths are drawn (prompt tokens L_in, generated tokens L_out).

    `fixed`: exactly `input_len` / `output_len`. `uniform`: integers uniform in
    [value / 2, 3 value / 2]. `lognormal`: median `value`, log-standard deviation `sigma`,
    clipped to [1, 4 value] (a long tail of long requests). 0 means from the preset: a
    quarter of seq_len for prompts, an eighth for outputs. Every request is then clipped so
    that L_in + L_out <= seq_len."""

    kind: LengthKind = "lognormal"
    input_len: int = Field(0, ge=0)
    output_len: int = Field(0, ge=0)
    sigma: float = Field(0.5, gt=0)


class LatencyTargets(BaseModel):
    """p99 bounds the server scenario must meet (seconds): time to first token and time per
    output token for LLMs, request latency for the others."""

    ttft_s: float = Field(gt=0)
    tpot_s: float = Field(gt=0)
    latency_s: float = Field(gt=0)


PRESET_TARGETS: dict[str, LatencyTargets] = {
    "tiny": LatencyTargets(ttft_s=0.05, tpot_s=0.02, latency_s=0.05),
    "small": LatencyTargets(ttft_s=0.2, tpot_s=0.05, latency_s=0.2),
    "base": LatencyTargets(ttft_s=2.0, tpot_s=0.2, latency_s=1.0),
}
"""Default p99 targets per preset (docs/scenarios.md); base follows MLPerf's server bounds
for LLMs (Llama 2 70B: TTFT 2 s, TPOT 200 ms)."""


class ScenarioSettings(BaseModel):
    """How the inference scenarios run (`bench run --scenario ...`)."""

    scenarios: list[ScenarioName] = Field(default_factory=lambda: list(SCENARIOS))
    lengths: LengthSpec = Field(default_factory=LengthSpec)
    targets: LatencyTargets | None = None
    """None means the preset's PRESET_TARGETS."""
    max_batch: int | None = Field(None, ge=1)
    """Most requests in one batch (in flight, for LLMs); None means the case's batch size."""
    max_wait_s: float | None = Field(None, ge=0)
    """Longest an item request waits for a fuller batch; None means by preset."""
    rates: list[float] = Field(default_factory=list)
    """Fixed server arrival rates (requests/s) instead of the max-rate search."""
    requests: int | None = Field(None, ge=10)
    """Requests per measured point at least; None means by preset."""
    search_steps: int | None = Field(None, ge=1)
    """Bisection steps of the max-rate search; None means by preset."""
    time_budget_s: float | None = Field(None, gt=0)
    """Wall time the server search may take; None means by preset."""
    min_duration_s: float | None = Field(None, gt=0)
    """A server point issues at least rate x this many requests; None means by preset."""

    def for_preset(self, preset: str) -> ScenarioSettings:
        """These settings with every None filled from the preset's defaults."""
        defaults = PRESET_SCENARIO.get(preset, PRESET_SCENARIO["small"])
        filled = {
            name: getattr(defaults, name) if getattr(self, name) is None else getattr(self, name)
            for name in (
                "targets",
                "max_wait_s",
                "requests",
                "search_steps",
                "time_budget_s",
                "min_duration_s",
            )
        }
        return self.model_copy(update=filled)


PRESET_SCENARIO: dict[str, ScenarioSettings] = {
    "tiny": ScenarioSettings(
        targets=PRESET_TARGETS["tiny"],
        max_wait_s=0.002,
        requests=64,
        search_steps=4,
        time_budget_s=30.0,
        min_duration_s=0.5,
    ),
    "small": ScenarioSettings(
        targets=PRESET_TARGETS["small"],
        max_wait_s=0.005,
        requests=200,
        search_steps=5,
        time_budget_s=120.0,
        min_duration_s=2.0,
    ),
    "base": ScenarioSettings(
        targets=PRESET_TARGETS["base"],
        max_wait_s=0.01,
        requests=1000,
        search_steps=6,
        time_budget_s=900.0,
        min_duration_s=10.0,
    ),
}
"""Per-preset scenario defaults: requests per point, search steps and time budget."""


class RunConfig(BaseModel):
    """A `bench run` request. Lists are cross-multiplied into cases."""

    backend: str = "cpu"
    workloads: list[str] = Field(default_factory=list)
    """Empty means the default suite."""
    modes: list[str] = Field(default_factory=list)
    """Empty means every mode each workload supports."""
    dtypes: list[str] = Field(default_factory=lambda: ["fp32"])
    batches: list[int] = Field(default_factory=list)
    """Empty means each workload preset's own batch size."""
    preset: str = "small"
    params: dict[str, str] = Field(default_factory=dict)
    """`key=value` (every selected workload with that key) or `workload.key=value`."""
    compile: bool = False
    fidelity: bool = False
    reference: str = "cpu:fp32"
    fidelity_steps: int | None = Field(None, ge=1)
    """Training steps of each fidelity check; None means by preset (tiny 20, small 100)."""
    nproc: int = Field(1, ge=1)
    """Processes per node; > 1 runs through torchrun (harness.distributed)."""
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    rdzv_endpoint: str | None = None
    """HOST:PORT of node 0 for multi-node runs (torchrun --rdzv-endpoint)."""
    scaling: bool = False
    """Measure 1..nproc processes per node and report scaling efficiency."""
    case_timeout_s: float | None = Field(None, gt=0)
    fidelity_timeout_s: float | None = Field(None, gt=0)
    """Seconds per fidelity check; None means FIDELITY_TIMEOUT_FACTOR x the case timeout."""
    isolate: Isolation = "worker"
    label: str = ""
    seed: int = 0
    out: Path = Path("results")
    measure: MeasureSettings | None = None
    """None means the preset's defaults (PRESET_MEASURE)."""
    rounds: int | None = Field(None, ge=1)
    """Rounds each case is measured in, its measurement budget split across them; None means
    by preset (PRESET_ROUNDS). The runner stores the number it used."""
    round_seed: int | None = None
    """Seed of the order of cases within each round; None means a fresh one, stored by the
    runner so the order can be reproduced."""
    interleave: Interleave | None = None
    """None means by preset (PRESET_INTERLEAVE); the runner stores what it used."""

    profile: bool = False
    """Profile each case's step (torch.profiler) and store its top operators."""
    profile_trace: bool = False
    """Also write each profiled step's Chrome trace under `out`/traces (implies profile)."""
    scenario: ScenarioSettings | None = None
    """Set by `--scenario`: the run measures inference scenarios instead of timed cases."""

    # --mode converge (harness.convergence): None means the preset's setting.
    seeds: int | None = Field(None, ge=1)
    """Seeds each converge case trains on the device and on the reference (tiny 3, small 5)."""
    target_step: int | None = Field(None, ge=1)
    """The reference step whose median eval loss is the target (tiny 100, small 300)."""
    soak_steps: int | None = Field(None, ge=1)
    """The first device seed of each converge case trains on to this many steps."""
    soak_s: float | None = Field(None, gt=0)
    """...or for this many seconds of training (whichever ends first)."""

    def measure_settings(self) -> MeasureSettings:
        return self.measure or PRESET_MEASURE.get(self.preset, MeasureSettings())

    def rounds_count(self) -> int:
        return self.rounds or PRESET_ROUNDS.get(self.preset, 3)

    def interleave_mode(self) -> Interleave:
        return self.interleave or PRESET_INTERLEAVE.get(self.preset, "workload")

    def case_timeout(self) -> float:
        return self.case_timeout_s or PRESET_CASE_TIMEOUT_S.get(self.preset, 300.0)

    def fidelity_timeout(self) -> float:
        return self.fidelity_timeout_s or FIDELITY_TIMEOUT_FACTOR * self.case_timeout()

    def converge_timeout(self) -> float:
        """Seconds per converge case: CONVERGE_TIMEOUT_FACTOR x the case timeout."""
        return CONVERGE_TIMEOUT_FACTOR * self.case_timeout()
