"""Run configuration: what the user asked for, validated once (here) and stored with the
results. Every per-preset default is in harness.results.presets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, PositiveInt, ValidationError, model_validator

from harness.results.endpoint import EndpointSettings
from harness.results.presets import (
    PRESETS,
    Interleave,
    LatencyTargets,
    MeasureSettings,
    Preset,
    PresetName,
)
from workloads.modes import Mode

Isolation = Literal["none", "worker", "case"]
"""Where cases run: in this process, in one reused worker process, or a fresh process each."""

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


class ScenarioSettings(BaseModel):
    """How the inference scenarios run (`bench run --scenario ...`)."""

    scenarios: list[ScenarioName] = Field(default_factory=lambda: list(SCENARIOS))
    lengths: LengthSpec = Field(default_factory=LengthSpec)
    targets: LatencyTargets | None = None
    """None means the preset's targets."""
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
    endpoint: EndpointSettings | None = None
    """Serve through OpenAI-compatible endpoints instead of the in-process engine."""

    def for_preset(self, preset: PresetName) -> ScenarioSettings:
        """These settings with every None filled from the preset's defaults."""
        defaults = PRESETS[preset].scenario
        filled = {
            field: getattr(defaults, field)
            if getattr(self, field) is None
            else getattr(self, field)
            for field in (
                "targets",
                "max_wait_s",
                "requests",
                "search_steps",
                "time_budget_s",
                "min_duration_s",
            )
        }
        return self.model_copy(update=filled)


DtypeName = Literal["fp32", "bf16", "fp16"]
"""The dtypes a run may name."""

RUN_DTYPES: tuple[str, ...] = get_args(DtypeName)

_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class RunConfig(BaseModel):
    """A `bench run` request. Lists are cross-multiplied into cases.

    Every option is checked here, once, when the config is built: a ValidationError names
    the field, the value and (for a choice) the valid values; `config_problems` words it for
    the command line or a config file. None means "by preset" (harness.results.presets)."""

    backend: str = "cpu"
    workloads: list[str] = Field(default_factory=list)
    """Empty means the preset's default suite."""
    modes: list[Mode] = Field(default_factory=list)
    """Empty means every mode each workload supports."""
    dtypes: list[DtypeName] = Field(default_factory=lambda: ["fp32"], min_length=1)
    batches: list[PositiveInt] = Field(default_factory=list)
    """Empty means each workload preset's own batch size."""
    preset: PresetName = "small"
    params: dict[str, str] = Field(default_factory=dict)
    """`key=value` (every selected workload with that key) or `workload.key=value`."""
    compile: bool = False
    fidelity: bool | None = None
    """Check training fidelity; None means on for the default suite of a timed run (the
    dispatcher, harness.dispatch.start, decides and stores the answer)."""
    reference: str = "cpu:fp32"
    fidelity_steps: int | None = Field(None, ge=1)
    """Training steps of each fidelity check; None means by preset."""
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
    """Seconds per fidelity check; None means the preset's factor x the case timeout."""
    isolate: Isolation = "worker"
    label: str = ""
    seed: int = 0
    out: Path = Path("results")
    measure: MeasureSettings | None = None
    """None means the preset's defaults."""
    rounds: int | None = Field(None, ge=1)
    """Rounds each case is measured in, its measurement budget split across them; None means
    by preset. The runner stores the number it used."""
    round_seed: int | None = None
    """Seed of the order of cases within each round; None means a fresh one, stored by the
    runner so the order can be reproduced."""
    interleave: Interleave | None = None
    """None means by preset; the runner stores what it used."""

    profile: bool = False
    """Profile each case's step (torch.profiler) and store its top operators."""
    profile_trace: bool = False
    """Also write each profiled step's Chrome trace under `out`/traces (implies profile)."""
    scenario: ScenarioSettings | None = None
    """Set by `--scenario`: the run measures inference scenarios instead of timed cases."""

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        """Options that only make sense together (the distributed ones, and what runs in one
        process only)."""
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(
                f"--node-rank {self.node_rank} is out of range for --nnodes {self.nnodes} "
                f"(valid: 0..{self.nnodes - 1})"
            )
        if self.rdzv_endpoint is not None and not _ENDPOINT.match(self.rdzv_endpoint):
            raise ValueError(
                "--rdzv-endpoint expects HOST:PORT of node 0 (e.g. 10.0.0.1:29500); "
                f"got '{self.rdzv_endpoint}'"
            )
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(
                f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT (node 0's address, "
                "the same on every node)"
            )
        if self.scaling and self.nproc < 2:
            raise ValueError(
                "--scaling measures 1..N processes per node and needs --nproc N with N >= 2"
            )
        if self.distributed and (self.profile or self.profile_trace):
            raise ValueError(
                "--profile and --profile-trace profile single-process cases only; drop them "
                "or run without --nproc/--nnodes/--scaling"
            )
        if self.distributed and self.scenario is not None:
            raise ValueError("--scenario runs in one process; drop --nproc/--nnodes/--scaling")
        return self

    @property
    def distributed(self) -> bool:
        """Whether the run goes through torchrun (several processes, nodes, or scaling)."""
        return self.nproc > 1 or self.nnodes > 1 or self.scaling

    @property
    def defaults(self) -> Preset:
        """The defaults of this config's preset (harness.results.presets)."""
        return PRESETS[self.preset]

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
        return self.measure or self.defaults.measure

    def rounds_count(self) -> int:
        return self.rounds or self.defaults.rounds

    def interleave_mode(self) -> Interleave:
        return self.interleave or self.defaults.interleave

    def case_timeout(self) -> float:
        return self.case_timeout_s or self.defaults.case_timeout_s

    def fidelity_timeout(self) -> float:
        return (
            self.fidelity_timeout_s or self.defaults.fidelity_timeout_factor * self.case_timeout()
        )

    def converge_timeout(self) -> float:
        """Seconds per converge case: the preset's converge_timeout_factor x the case timeout."""
        return self.defaults.converge_timeout_factor * self.case_timeout()


def config_problems(exc: ValidationError, name: Any = None) -> str:
    """One line naming each problem of a RunConfig (or nested settings) that failed to
    build: where (`name(loc)`, by default the dotted field path without list indices), the
    value, and the valid
    choices of a choice. `name` lets the command line say `--option` and a file say its key."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = name(loc) if name else ".".join(str(p) for p in loc if not isinstance(p, int))
        if error["type"] == "literal_error":
            choices = str(error["ctx"]["expected"]).replace("'", "").replace(" or ", ", ")
            problems.append(f"unknown {where} {error['input']!r}; choose from: {choices}")
        elif error["type"] == "value_error" and not loc:
            problems.append(str(error["ctx"]["error"]))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message[:1].lower()}{message[1:]}, got {error['input']!r}")
    return "; ".join(problems) + "."
