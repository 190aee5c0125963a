"""Everything accelbench stores: pydantic models with a schema version. Nothing is pickled."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backends.device import DeviceInfo
from harness.results.config import RunConfig
from harness.results.endpoint import EndpointInfo, EndpointPoint
from harness.results.fidelity import FidelityResult

SCHEMA_VERSION = 2
"""2: measurements taken in rounds (`Measurement.sample_rounds`, `rounds`, and a `ci95` that
accounts for drift between rounds); version-1 files load as one round."""
"""Bumped on any change that an older reader could misread; readers refuse newer files."""

RunStatus = Literal["running", "complete", "incomplete"]
CaseStatus = Literal["ok", "failed", "unsupported"]
ErrorKind = Literal[
    "exception", "crash", "timeout", "oom", "nonfinite", "unsupported", "interrupted"
]
Stability = Literal["ok", "warn", "severe"]
KeyField = Literal[
    "workload", "workload_version", "mode", "dtype", "batch", "preset", "params", "compile", "nproc"
]
"""The fields of a CaseKey, by name."""
MfuStatus = Literal["reported", "no_peak", "above_100"]
"""What became of a case's MFU: `reported` (in `mfu`), `no_peak` (no peak FLOP/s known for its
dtype), `above_100` (it would exceed 100% of the peak, so the peak is not the device's maximum
and the figure was dropped)."""


class CaseKey(BaseModel):
    """What identifies a case across runs; two cases compare only when their keys match."""

    model_config = ConfigDict(frozen=True)

    workload: str
    workload_version: str
    mode: str
    dtype: str
    batch: int
    preset: str
    params: dict[str, Any] = Field(default_factory=dict)
    compile: bool = False
    nproc: int = 1

    @property
    def id(self) -> str:
        """Short readable id, e.g. `gpt/train/bf16/b8/small`."""
        text = f"{self.workload}/{self.mode}/{self.dtype}/b{self.batch}/{self.preset}"
        if self.compile:
            text += "/compiled"
        if self.nproc > 1:
            text += f"/np{self.nproc}"
        return text

    def identity(self, *, ignoring: Iterable[KeyField] = ()) -> str:
        """The one rule for "the same case": canonical JSON of every field of the key (params
        with sorted keys), as a hashable text to group or match by. Two keys are the same case
        across runs exactly when their `identity()` texts are equal.

        `ignoring` leaves the named fields out, so keys that differ only in those fields share
        the text: e.g. `ignoring=("nproc",)` groups one case measured at several world sizes.
        """
        left_out = set(ignoring)
        return json.dumps(self.model_dump(exclude=left_out), sort_keys=True, default=str)

    def pair_key(self) -> str:
        """The same case in any mode: what pairs a workload's `train` case with its `infer`
        case (same workload and version, dtype, batch, preset, params, compile, nproc)."""
        return self.identity(ignoring=("mode",))

    def history_key(self) -> str:
        """The same case over time, whatever the workload's version: what a history follows
        and what "the latest result of a case" replaces (a new version supersedes the old)."""
        return self.identity(ignoring=("workload_version",))

    def params_text(self) -> str:
        """The params as canonical JSON (sorted keys), as `identity()` writes them."""
        return json.dumps(self.params, sort_keys=True, default=str)


class Measurement(BaseModel):
    """Timing samples of one case and their statistics (seconds per iteration)."""

    samples_s: list[float]
    iterations_per_sample: int
    warmup_iterations: int = 0
    cold_start_s: float | None = None
    total_time_s: float = 0.0
    median: float
    """The headline time per iteration: the median over rounds of each round's median
    (`stats.median_of_rounds`), so each round counts once; the plain median with one round."""
    mean: float
    stdev: float
    q1: float
    q3: float
    iqr: float
    ci95: tuple[float, float]
    """95% CI of the median over rounds (harness.stats.hierarchical_median_ci):
    it accounts for drift between rounds; with one round it is `ci95_within_round`."""
    ci95_within_round: tuple[float, float] | None = None
    """The bootstrap CI of the median that treats all samples as one window: blind to drift
    between rounds, so narrower than `ci95` on a drifting machine. Kept for reference."""
    stable: bool
    """True when the 95% CI (`ci95`) half-width of the median reached the requested
    precision."""
    stability: Stability
    """The worse of IQR/median (below 10% ok, below 25% warn, else severe) and the `ci95`
    half-width over the median (below 5% ok, below 12.5% warn, else severe)."""
    outliers: list[Literal["", "mild", "severe"]] = Field(default_factory=list)
    """Tukey label of each sample (1.5 and 3 IQR fences); samples are never dropped."""
    sample_rounds: list[int] = Field(default_factory=list)
    """The round each sample was taken in, parallel to `samples_s` (rounds count from 0)."""
    rounds: int = 1
    """Rounds this measurement spans (rounds with at least one sample)."""

    @property
    def n(self) -> int:
        return len(self.samples_s)

    @model_validator(mode="before")
    @classmethod
    def _one_round_when_unrecorded(cls, data: Any) -> Any:
        """Version-1 files have no rounds: all their samples are round 0 and their `ci95` is
        the single-window CI."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        if not filled.get("sample_rounds"):
            filled["sample_rounds"] = [0] * len(filled.get("samples_s") or [])
            filled.setdefault("rounds", 1)
        if filled.get("ci95_within_round") is None and filled.get("rounds", 1) == 1:
            filled["ci95_within_round"] = filled.get("ci95")
        return filled

    @model_validator(mode="after")
    def _rounds_match_samples(self) -> Measurement:
        if len(self.sample_rounds) != len(self.samples_s):
            raise ValueError(
                f"sample_rounds has {len(self.sample_rounds)} entries for "
                f"{len(self.samples_s)} samples"
            )
        return self


class CaseError(BaseModel):
    """Why a case did not produce a measurement."""

    kind: ErrorKind
    message: str


class Throughput(BaseModel):
    """Items per second, with the unit of the items (samples/s, tokens/s, images/s, B/s)."""

    value: float
    unit: str


class RankTiming(BaseModel):
    """One rank's own timing of a distributed case (seconds per iteration, per sample)."""

    rank: int
    local_rank: int = 0
    host: str = ""
    samples_s: list[float]
    median: float
    peak_memory_bytes: int | None = None


class CollectivePoint(BaseModel):
    """One message size of a collectives sweep (nccl-tests conventions).

    `size_bytes` is S: the buffer of all_reduce/broadcast, the gathered output of all_gather,
    the input of reduce_scatter, each rank's send buffer of all_to_all. algbw = S / time;
    busbw = algbw x the operation's factor."""

    size_bytes: int
    median_s: float
    algbw: float
    """Bytes per second."""
    busbw: float
    """Bytes per second."""
    samples: int


PHASES = ("h2d", "forward", "backward", "communication", "optimizer", "zero_grad")
"""The phases of a training step, in the order a step runs them."""


class PhaseBreakdown(BaseModel):
    """Where one training step's time goes, from instrumented iterations taken after the
    headline measurement (so the headline timing is not perturbed by them)."""

    phases_s: dict[str, float]
    """Median seconds per phase over the instrumented iterations (keys from PHASES, or any
    name a user timed)."""
    step_s: float
    """Median seconds of a whole instrumented iteration (first phase start to last end)."""
    coverage: float
    """How much of the step the phases account for: the median over iterations of (sum of
    the iteration's phase times) / (its step time)."""
    iterations: int
    clock: str = ""
    """How the phases were timed: `device events` or `host clock`."""
    attribution: str = ""
    """How overlapping work was attributed (e.g. DDP's all-reduce inside backward)."""
    optimizer_bytes: float | None = None
    """Bytes one optimizer step reads and writes (the workload's count), or None."""
    optimizer_bytes_note: str = ""
    """How `optimizer_bytes` was counted, in words."""

    unattributed_s: float | None = None
    """Median over iterations of (step time - the iteration's phases): the time between and
    around phases (Python, loss scaling)."""

    @property
    def other_s(self) -> float:
        """Step time no phase accounts for, never negative: `unattributed_s`, else (files
        without it) step_s minus the phase medians."""
        if self.unattributed_s is not None:
            return max(self.unattributed_s, 0.0)
        return max(self.step_s - sum(self.phases_s.values()), 0.0)


class ProfiledOp(BaseModel):
    """One operator of a profiled step, its time summed over its calls."""

    name: str
    """The profiler's event name (e.g. `aten::mm`)."""
    phase: str
    """forward, backward, optimizer, zero_grad or other (from its place in the call tree)."""
    forward_op: str
    """The forward operator it belongs to: its own name for forward ops, the autograd node's
    (MmBackward0 -> mm) for backward ops, so one operator's forward and backward add up."""
    seconds: float
    """Per step: device time where the device was profiled, else self CPU time."""
    share: float
    """seconds / the step's total profiled time."""
    calls: float
    """Calls per step."""


class OpProfile(BaseModel):
    """The top operators of one case's step (the backend's profiler), not the trace."""

    activities: list[str]
    time_kind: Literal["device", "self cpu"]
    """What `seconds` rank: the device time of each operator's own kernels, or its host self
    time."""
    note: str = ""
    """Why the time is host time where device time was expected (the device profiler is
    missing or saw no kernels)."""
    iterations: int
    total_s: float
    """Per step, all profiled operators together (of `time_kind`)."""
    ops: list[ProfiledOp]
    """The largest operators, by seconds, at most PROFILE_TOP of them."""
    trace: str | None = None
    """Path of the Chrome trace (`--profile-trace`), relative to the results folder."""


class CaseEnergy(BaseModel):
    """Energy of one case over its measurement window (cold start, warm-up and samples)."""

    joules: float
    """Energy the device used during the window."""
    seconds: float
    """Length of the window."""
    average_power_w: float
    joules_per_step: float
    """average power x median seconds per step."""
    joules_per_item: float | None = None
    item_unit: str = ""
    """What an item is (tokens, samples, images): joules_per_item is J per one of them."""
    method: str = ""
    """How the energy was read (counter or integrated power samples, and from where)."""


class SampleTrend(BaseModel):
    """Sample time against sample order within a round (harness.stats
    `within_round_trend`): a cost that depends on the state the step leaves behind."""

    tau: float
    """Kendall's tau-b of (sample / round median) against position in the round."""
    p_value: float
    slope: float
    """Theil-Sen slope: change per sample as a fraction of the round's median."""
    change: float
    """How far a round's last sample lies from its first, as a fraction of the median."""
    samples: int
    flagged: bool
    """Significant (p < 0.01) and at least 10% over a round."""
    cause: str | None = None
    """What explains it where known (e.g. denormal values the step created)."""


class DenormalCount(BaseModel):
    """Denormal floating-point values (x != 0 and |x| < finfo(dtype).tiny) a training case
    left behind, counted at its end: the CPU computes on them through a slow path."""

    parameters: int = 0
    gradients: int = 0
    optimizer_state: int = 0
    activations: int | None = None
    """Module outputs and their gradients over one instrumented step (the softmax gradient
    of a model that memorised its batch is where they appear first); None when not counted."""
    values: int = 0
    """Floating-point values examined in parameters, gradients and optimizer state."""
    flush_coverage: float | None = None
    """Fraction of a parallel operation's elements that the process's threads flushed to zero
    (1.0: flush-to-zero in every intra-op thread, 0.0: in none); None where not probed."""

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + (self.activations or 0)


class CaseResult(BaseModel):
    """The outcome of one case: its measurement and derived figures, or why it failed."""

    key: CaseKey
    status: CaseStatus
    error: CaseError | None = None
    measurement: Measurement | None = None
    throughput: Throughput | None = None
    flops_per_step: float | None = None
    achieved_flops: float | None = None
    bytes_per_step: float | None = None
    achieved_bandwidth: float | None = None
    mfu: float | None = None
    peak_flops_source: str | None = None
    mfu_status: MfuStatus | None = None
    """What became of the MFU (derived by harness.results.derive); None when the case has no
    achieved FLOP/s, so no MFU to compute. Read this, not `mfu_note`, to tell why `mfu` is
    missing."""
    mfu_note: str | None = None
    """Why `mfu` is missing, in words for people (no usable peak, or it would exceed 100%)."""
    peak_memory_bytes: int | None = None
    extra: dict[str, float] = Field(default_factory=dict)
    started_at: datetime | None = None
    duration_s: float | None = None
    per_rank: list[RankTiming] | None = None
    """Distributed cases: every rank's own samples; `measurement` holds the per-sample max."""
    collectives: list[CollectivePoint] | None = None
    """Collectives probes: one point per message size."""
    scaling_efficiency: float | None = None
    """--scaling: (throughput / world) / (throughput_base / world_base), base = smallest world."""
    host_fallbacks: list[str] | None = None
    """Operators the device reported running on the host instead (torch_npu's "will fall
    back to run on the CPU" warnings) while the case was built and run; None when none."""
    profile: OpProfile | None = None
    """`--profile`: the step's top operators; None when not profiled."""
    phases: PhaseBreakdown | None = None
    """Train cases: forward / backward / optimizer / ... seconds from separate instrumented
    iterations; None for other modes and for results written before phases existed."""
    energy: CaseEnergy | None = None
    energy_note: str | None = None
    """Why `energy` is missing (no energy source on this device, or the source failed)."""
    yardstick: dict[str, list[float]] | None = None
    """Seconds per call of each yardstick (harness.measurement.yardstick, by name) read right
    before each round of the case, in round order: how fast the machine was as the round
    began. None for results written before yardsticks existed and for distributed cases."""
    trend: SampleTrend | None = None
    """Whether the samples trend within rounds (state-dependent cost); None when not
    estimated."""
    denormals: DenormalCount | None = None
    """Train cases on the CPU: denormal values at the end of the case; None when not counted."""
    convergence: Convergence | None = None
    """`--mode converge` cases: training to a target against the reference band (models at
    the end of this module); None for every other mode and for older files."""


class Percentiles(BaseModel):
    """p50 / p90 / p99 of one latency metric (seconds), each with a bootstrap 95% CI."""

    p50: float
    p90: float
    p99: float
    p50_ci95: tuple[float, float]
    p90_ci95: tuple[float, float]
    p99_ci95: tuple[float, float]


ScenarioKind = Literal["single-stream", "offline", "server", "concurrency"]


class ScenarioPoint(BaseModel):
    """One measured scenario run: every request's lengths and timings, and their summary.

    Times are seconds from the start of the run (arrivals as scheduled); `latency_s` is from
    arrival to the last output, `ttft_s` from arrival to the first token and `tpot_s` the mean
    time between a request's later tokens (LLM requests only, None where a request made a
    single token)."""

    scenario: ScenarioKind
    target_rate: float | None = None
    """Server: the Poisson arrival rate asked for (requests/s)."""
    requests: int
    duration_s: float
    """From the start to the last completion."""
    achieved_rate: float
    """Completed requests per second over `duration_s`."""
    tokens_per_s: float | None = None
    """LLMs: generated tokens per second over `duration_s`."""
    arrival_s: list[float]
    latency_s: list[float]
    ttft_s: list[float] = Field(default_factory=list)
    tpot_s: list[float | None] = Field(default_factory=list)
    input_len: list[int] = Field(default_factory=list)
    output_len: list[int] = Field(default_factory=list)
    percentiles: dict[str, Percentiles] = Field(default_factory=dict)
    """Metric (latency, ttft, tpot) -> its percentiles."""
    meets_target: bool | None = None
    """Server: every p99 within its target."""
    decided: bool = True
    """False when the target lay inside a p99's CI after the most requests allowed: the verdict
    then rests on the point estimate."""
    endpoint: EndpointPoint | None = None
    """Against a serving endpoint: failures, goodput, per-request outcomes."""


class ScenarioResult(BaseModel):
    """The inference scenarios of one workload/dtype/batch on a backend (LoadGen-style)."""

    key: CaseKey
    """mode is `serve`; batch is the scheduler's max batch."""
    status: CaseStatus
    error: CaseError | None = None
    kind: Literal["items", "tokens"] = "items"
    lengths: dict[str, Any] = Field(default_factory=dict)
    """The length distribution requests were drawn from (LengthSpec), LLMs only."""
    targets: dict[str, float] = Field(default_factory=dict)
    """p99 targets by metric (seconds)."""
    max_wait_s: float | None = None
    seed: int = 0
    single_stream: ScenarioPoint | None = None
    offline: ScenarioPoint | None = None
    server: list[ScenarioPoint] = Field(default_factory=list)
    """Every server rate measured, in the order tried."""
    max_rate: float | None = None
    """Highest arrival rate whose p99s met the targets (requests/s); None if none did."""
    missed_rate: float | None = None
    """The lowest rate above max_rate that missed them: the max rate lies in
    [max_rate, missed_rate). None when the offline throughput itself met them."""
    search_note: str = ""
    """How the max-rate search bracketed and why it stopped."""
    concurrency: list[ScenarioPoint] = Field(default_factory=list)
    """Closed-loop points at fixed concurrency (endpoint runs with --concurrency)."""
    endpoint: EndpointInfo | None = None
    """Set when the scenarios ran against a serving endpoint instead of in-process."""
    started_at: datetime | None = None
    duration_s: float | None = None


class EnvironmentInfo(BaseModel):
    """The machine and software a run saw; what makes two runs comparable or not."""

    hostname: str
    platform: str
    python: str
    cpu_model: str
    logical_cores: int
    affinity_cores: int | None = None
    torch_version: str
    torch_build: str
    torch_threads: int
    torch_interop_threads: int
    accelbench_version: str
    git_commit: str | None = None
    load_average: tuple[float, float, float] | None = None
    cpu_governor: str | None = None
    cpu_turbo: str | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)


class PeakFigure(BaseModel):
    """The peak that MFU is computed against, and where it comes from."""

    flops: float
    source: str


class DistInfo(BaseModel):
    """How a distributed run (`--nproc > 1` or `--scaling`) was launched."""

    dist_backend: str
    world_size: int
    """The largest world size of the run (processes over all nodes)."""
    world_sizes: list[int]
    """Every world size measured (more than one with --scaling)."""
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    launcher: str = "torch.distributed.run"
    threads_per_rank: int | None = None
    step_time: str = "max over ranks of each sample"


class RunRecord(BaseModel):
    """One `bench run`: configuration, environment, device and every case's result."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: RunStatus = "running"
    command: list[str] = Field(default_factory=list)
    label: str = ""
    backend: str
    config: RunConfig
    environment: EnvironmentInfo
    device: DeviceInfo
    peaks: dict[str, PeakFigure] = Field(default_factory=dict)
    """dtype name -> peak FLOP/s used for MFU (known spec, else measured matmul)."""
    sustained_peaks: dict[str, PeakFigure] = Field(default_factory=dict)
    """dtype name -> sustained matmul FLOP/s (matmul sustain_s=...), used for training MFU."""
    cases: list[CaseResult] = Field(default_factory=list)
    distributed: DistInfo | None = None
    """Set for distributed runs; None for single-process runs."""
    fidelity: list[FidelityResult] = Field(default_factory=list)
    """Training-fidelity checks against the reference (`bench run --fidelity`)."""
    scenarios: list[ScenarioResult] = Field(default_factory=list)
    """LoadGen-style inference scenarios (`bench run --scenario`)."""


# --- Train to a target (`--mode converge`, harness.convergence) ---------------------------

ConvergenceVerdict = Literal["pass", "slow", "fast", "not_reached", "unstable", "failed"]
EventKind = Literal[
    "spike", "grad_outlier", "nonfinite", "skipped", "memory_growth", "step_time_drift"
]


class ConvergenceEvent(BaseModel):
    """Something that happened at one step of one seed's run: a loss spike (value: the loss
    over the running median), a gradient-norm outlier (value: the norm over the running
    median), a non-finite loss/gradient/weight, a step the fp16 loss scaler skipped, memory
    growth over the run (value: bytes grown), a drift of the step time (value: the last
    quarter's median step time over the first quarter's)."""

    seed: int
    step: int
    kind: EventKind
    value: float | None = None
    run: Literal["device", "reference", "honest"] = "device"


class SeedCurve(BaseModel):
    """One seed's training run: the eval loss at every evaluated step, and where it stopped."""

    seed: int
    run: Literal["device", "reference", "honest"] = "device"
    eval_steps: list[int] = Field(default_factory=list)
    """Steps after which the held-out eval ran (the step count trained so far)."""
    eval_loss: list[float | None] = Field(default_factory=list)
    steps_trained: int = 0
    steps_to_target: int | None = None
    time_to_target_s: float | None = None
    """Seconds of training steps (evals excluded) up to steps_to_target."""
    step_time_s: float | None = None
    """Median seconds per training step over the run."""
    memory_bytes: list[int] = Field(default_factory=list)
    """Memory in use at each eval point (device allocator, or the process RSS on the host)."""
    energy_j: list[float | None] = Field(default_factory=list)
    """Device runs: joules metered over the training steps so far (evals excluded) at each eval
    point, beside eval_steps; None from the first window the meter could not read. Empty for
    the reference and honest runs (they are not metered)."""
    energy_to_target_j: float | None = None
    """energy_j at steps_to_target (None when not reached or not metered)."""


class TelemetrySample(BaseModel):
    """One reading of Backend.telemetry() while a device seed trained: taken at an eval point
    (after `step` training steps, off the timed steps), e.g. clock_mhz, power_w,
    temperature_c, whichever the backend reads."""

    seed: int
    step: int
    values: dict[str, float] = Field(default_factory=dict)


class ConvergenceBand(BaseModel):
    """Where a healthy device's steps-to-target lie: the reference's steps-to-target over
    the seeds (and the honest low-precision run's, where there is one), widened by one eval
    interval on each side (steps-to-target is only known to the eval interval)."""

    low: int
    high: int
    reference: list[int | None] = Field(default_factory=list)
    honest: list[int | None] = Field(default_factory=list)
    honest_name: str | None = None
    margin: int = 0


class Convergence(BaseModel):
    """A converge case: the device trained each seed to the target derived from the
    reference, its steps and time to get there, the stability events, and the verdict."""

    target_loss: float
    target_step: int
    """The reference step whose median eval loss (over seeds) is the target."""
    eval_every: int
    eval_batches: int
    step_cap: int
    seeds: list[int]
    reference: str = "cpu:fp32"
    steps_to_target: list[int | None] = Field(default_factory=list)
    """One per seed, None when the seed did not reach the target within step_cap."""
    reference_steps_to_target: list[int | None] = Field(default_factory=list)
    band: ConvergenceBand | None = None
    steps_ratio: float | None = None
    """Median device steps-to-target over median reference steps-to-target."""
    steps_ratio_ci: tuple[float, float] | None = None
    effective_penalty: float | None = None
    """steps_ratio x the run's step-time training penalty (set at analysis time)."""
    effective_penalty_ci: tuple[float, float] | None = None
    time_to_target_s: list[float | None] = Field(default_factory=list)
    energy_to_target_j: list[float | None] = Field(default_factory=list)
    """One per device seed: joules metered over its training steps up to steps_to_target
    (evals excluded, like time_to_target_s); None when not reached or not metered."""
    energy_to_target_median_j: float | None = None
    """Median of energy_to_target_j over the seeds that have one."""
    energy_method: str | None = None
    """How the energy was metered (the backend's EnergyMeter), where it was."""
    energy_note: str | None = None
    """Why there is no energy to target (the meter's reason), where there is none."""
    telemetry: list[TelemetrySample] = Field(default_factory=list)
    """Backend.telemetry() at every eval point of every device seed (soak included); empty
    where the backend reads nothing."""
    spike_threshold: float | None = None
    grad_outlier_threshold: float | None = None
    curves: list[SeedCurve] = Field(default_factory=list)
    events: list[ConvergenceEvent] = Field(default_factory=list)
    soak_steps: int | None = None
    verdict: ConvergenceVerdict = "pass"
    reasons: list[str] = Field(default_factory=list)


CaseResult.model_rebuild()
