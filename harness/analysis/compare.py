"""Comparing two runs case by case: a change is reported only when it is both significant
and established beyond what this machine can resolve (the CI of the ratio of medians wholly
beyond the threshold and beyond the case's noise floor). Pure over RunRecords; the CLI
renders the result.

Measurements taken in rounds are judged by their between-round variation (rounds are the
independent units: `stats.compare_rounds`, Welch's t on per-round log-medians); single-round
measurements (version-1 files) by Mann-Whitney U and the bootstrap of the raw samples. Each
case gets a noise floor: the larger of the between-round half-width of the ratio and, with
at least HISTORY_MIN_RUNS earlier runs of the case on the same host and device, their spread
(`stats.history_floor`). A change whose CI reaches inside the floor is never `regressed`:
the floor is what the same code moves by on this machine, so the change must be shown to
exceed it, not merely to exist (on a shared VM a case can sit in a slower state for most of
one run's rounds: a 1.40x ratio with a CI from 1.14 and a 22% floor, same code).

A machine that changed speed between the runs is told apart from changed code by the
yardsticks (harness.measurement.yardstick) read before each of the case's rounds: a change
called `regressed` or `improved` on the raw times must also be established, by the same
rule, with each round's median divided by the round's reading of each yardstick that moved
the same way, significantly and beyond the threshold; where it is not, the verdict is
`noisy` and the reason names the yardstick and how far the machine moved.
Judging against every yardstick (not one chosen) is deliberate: the slow state of a shared
host costs dispatch-bound work far more than compute-bound work, and which profile a case
has is not known, so a change counts only if no yardstick explains it."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from harness.errors import BenchError
from harness.results.schema import CaseKey, CaseResult, KeyField, RunRecord
from harness.stats import (
    DEFAULT_THRESHOLD,
    SampleComparison,
    compare_per_round,
    compare_rounds,
    compare_samples,
    history_floor,
    relative_round_medians,
    threshold_side,
)

Verdict = Literal[
    "improved", "regressed", "noisy", "unchanged", "not comparable", "failed", "missing", "new"
]
VERDICTS: tuple[Verdict, ...] = (
    "regressed",
    "failed",
    "improved",
    "noisy",
    "unchanged",
    "not comparable",
    "missing",
    "new",
)
GATE_VERDICTS: frozenset[Verdict] = frozenset({"regressed", "failed"})
"""Verdicts that make `--fail-on-regression` exit 1: slower, or broken where it worked."""

ALPHA = 0.05
HISTORY_MIN_RUNS = 2
"""Earlier runs of a case (same host and device) needed before their spread sets a floor."""

_MUST_MATCH: tuple[KeyField, ...] = ("workload_version", "dtype", "preset", "batch")
"""Key fields that make two otherwise matching cases not comparable when they differ."""


def parse_threshold(value: str | float) -> float:
    """`5%` -> 0.05, `0.05` -> 0.05. Raises ValueError with a hint for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"threshold must be like 5% or 0.05, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"threshold must be like 5% or 0.05, got {value!r}") from None
    if not 0.0 < number < 1.0:
        raise ValueError(
            f"threshold must be above 0% and below 100% (write 5% or 0.05), got {value!r}"
        )
    return number


ThresholdValue = Annotated[float, BeforeValidator(parse_threshold)]
"""A relative threshold written `5%` or `0.05`."""


class Thresholds(BaseModel):
    """Relative change below which a case counts as unchanged: a default and per workload.

    Stored as TOML or JSON, e.g. `default = "5%"` and a `[workloads]` table `gpt = "10%"`;
    with neither file nor --threshold, `stats.DEFAULT_THRESHOLD` (10%).
    """

    model_config = ConfigDict(extra="forbid")

    default: ThresholdValue = DEFAULT_THRESHOLD
    workloads: dict[str, ThresholdValue] = Field(default_factory=dict)

    def for_workload(self, workload: str) -> float:
        return self.workloads.get(workload, self.default)


def load_thresholds(path: Path, default: float | None = None) -> Thresholds:
    """Read a thresholds file (.toml or .json); `default` (from --threshold) overrides the
    file's default. Raises BenchError naming the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read thresholds file {path}: {exc}") from None
    data: Any
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise BenchError(
                f"reading TOML ({path}) needs Python 3.11 or later; write the thresholds as JSON."
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BenchError(f"thresholds file {path} is not valid TOML: {exc}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BenchError(f"thresholds file {path} is not valid JSON: {exc}") from None
    else:
        raise BenchError(f"thresholds file {path} must end in .toml or .json.")
    if not isinstance(data, dict):
        raise BenchError(f"thresholds file {path} must hold a table with `default`/`workloads`.")
    try:
        thresholds = Thresholds.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise BenchError(
            f'thresholds file {path} is invalid ({problems}). Expected e.g. default = "5%" '
            f'and a [workloads] table like gpt = "10%".'
        ) from None
    if default is not None:
        thresholds = thresholds.model_copy(update={"default": default})
    return thresholds


class YardstickComparison(BaseModel):
    """How the machine moved between two runs by one yardstick, read before the case's rounds,
    and how the case moved relative to it."""

    name: str
    machine_ratio: float
    """The yardstick's own ratio new/base (above 1: the machine was slower in the new run)."""
    machine_ci95: tuple[float, float]
    machine_p: float
    relative_ratio: float
    """The case's ratio with each round's median divided by the round's yardstick reading."""
    relative_ci95: tuple[float, float]
    relative_p: float
    relative_floor: float

    @property
    def move(self) -> float:
        """How far the machine moved by this yardstick, either way: |log machine_ratio|."""
        return abs(math.log(self.machine_ratio))


class CaseComparison(BaseModel):
    """The verdict on one case; `base`/`new` are None when the case is missing from a run."""

    case_id: str
    verdict: Verdict
    reason: str = ""
    threshold: float | None = None
    base: CaseResult | None = None
    new: CaseResult | None = None
    ratio: float | None = None
    """median(new) / median(base) of the time per iteration: above 1 is slower."""
    ratio_ci95: tuple[float, float] | None = None
    p_value: float | None = None
    noise_floor: float | None = None
    """Smallest relative change these runs can resolve (0.12 = 12%); None when neither the
    rounds nor the history give one."""
    floor_source: str = ""
    """Where the floor comes from: `rounds`, `history of N runs`, or both."""
    history_runs: int = 0
    """Earlier runs of this case on the same host and device that were looked at."""
    yardsticks: list[YardstickComparison] = Field(default_factory=list)
    """The case judged against each yardstick both runs read (none for older files)."""


class RunComparison(BaseModel):
    """Every case of two runs, with the machine and library differences between them."""

    base_run: str
    new_run: str
    differences: list[str]
    cases: list[CaseComparison]

    def counts(self) -> dict[str, int]:
        """Number of cases per verdict, in VERDICTS order, zero counts left out."""
        found = Counter(case.verdict for case in self.cases)
        return {verdict: found[verdict] for verdict in VERDICTS if found[verdict]}

    def machine_moves(self) -> dict[str, float]:
        """Per yardstick, the median over compared cases of its ratio new/base: how much
        slower the machine was in the new run (1.0: the same)."""
        ratios: dict[str, list[float]] = defaultdict(list)
        for case in self.cases:
            for yardstick in case.yardsticks:
                ratios[yardstick.name].append(yardstick.machine_ratio)
        return {name: statistics.median(values) for name, values in sorted(ratios.items())}

    def machine_moved(self) -> bool:
        """Whether, for some case, a yardstick moved by more than the case's threshold."""
        return any(
            y.move > math.log1p(case.threshold or DEFAULT_THRESHOLD)
            for case in self.cases
            for y in case.yardsticks
        )

    def gate_failures(self) -> list[CaseComparison]:
        return [case for case in self.cases if case.verdict in GATE_VERDICTS]


def classify(
    result: SampleComparison,
    threshold: float,
    alpha: float = ALPHA,
    floor: float | None = None,
) -> Verdict:
    """improved/regressed only when p < alpha and the ratio's CI lies wholly beyond
    1 -/+ max(threshold, floor); noisy when the ratio itself is beyond the threshold but
    that is not established."""
    significant = result.p_value == result.p_value and result.p_value < alpha
    limit = max(threshold, floor or 0.0)
    if significant and threshold_side(result.ci95, 1.0 + limit) == "above":
        return "regressed"
    if significant and threshold_side(result.ci95, 1.0 - limit) == "within":
        return "improved"
    if result.ratio > 1.0 + threshold or result.ratio < 1.0 - threshold:
        return "noisy"
    return "unchanged"


_ENV_FIELDS = (
    ("hostname", "host"),
    ("cpu_model", "CPU"),
    ("logical_cores", "logical cores"),
    ("affinity_cores", "usable cores (affinity)"),
    ("platform", "OS"),
    ("python", "Python"),
    ("torch_version", "torch version"),
    ("torch_build", "torch build"),
    ("torch_threads", "torch threads"),
    ("torch_interop_threads", "torch inter-op threads"),
    ("accelbench_version", "accelbench version"),
    ("git_commit", "accelbench commit"),
    ("cpu_governor", "CPU governor"),
    ("cpu_turbo", "CPU turbo"),
)


def environment_differences(base: RunRecord, new: RunRecord) -> list[str]:
    """One line per machine, device, library or device setting (Backend.settings(): precision
    modes, threads, ...) that differs between the two runs."""
    lines: list[str] = []

    def note(what: str, old: object, now: object) -> None:
        if old != now:
            lines.append(
                f"{what}: {old if old is not None else '-'} -> {now if now is not None else '-'}"
            )

    note("backend", base.backend, new.backend)
    note("device", base.device.name, new.device.name)
    note("device count", base.device.count, new.device.count)
    for name in sorted(set(base.device.runtime) | set(new.device.runtime)):
        note(f"runtime {name}", base.device.runtime.get(name), new.device.runtime.get(name))
    for attr, what in _ENV_FIELDS:
        note(what, getattr(base.environment, attr), getattr(new.environment, attr))
    old_vars, new_vars = base.environment.env_vars, new.environment.env_vars
    for name in sorted(set(old_vars) | set(new_vars)):
        note(f"${name}", old_vars.get(name), new_vars.get(name))
    old_settings, new_settings = base.device.settings, new.device.settings
    for name in sorted(set(old_settings) | set(new_settings)):
        if name.startswith("$") and name[1:] in set(old_vars) | set(new_vars):
            continue  # already named above, from the environment capture
        note(f"setting {name}", old_settings.get(name), new_settings.get(name))
    return lines


def _key_differences(base: CaseKey, new: CaseKey) -> list[str]:
    return [
        f"{name} differs ({getattr(base, name)} vs {getattr(new, name)})"
        for name in _MUST_MATCH
        if getattr(base, name) != getattr(new, name)
    ]


def _compare_case(
    base: CaseResult,
    new: CaseResult,
    reasons: list[str],
    thresholds: Thresholds,
    resamples: int,
    history: list[float],
) -> CaseComparison:
    case_id = new.key.id if new.key.id == base.key.id else f"{base.key.id} vs {new.key.id}"
    threshold = thresholds.for_workload(new.key.workload)
    entry = CaseComparison(
        case_id=case_id, verdict="unchanged", base=base, new=new, threshold=threshold
    )
    if reasons:
        return entry.model_copy(update={"verdict": "not comparable", "reason": "; ".join(reasons)})
    if new.status != "ok" or new.measurement is None:
        if base.status != "ok" or base.measurement is None:
            return entry.model_copy(
                update={"verdict": "not comparable", "reason": "failed in both runs"}
            )
        why = f"{new.error.kind}: {new.error.message}" if new.error else new.status
        return entry.model_copy(update={"verdict": "failed", "reason": f"new run {why}"})
    if base.status != "ok" or base.measurement is None:
        why = base.error.kind if base.error else base.status
        return entry.model_copy(
            update={"verdict": "not comparable", "reason": f"base run failed ({why})"}
        )
    b, n = base.measurement, new.measurement
    rounds = compare_rounds(
        b.samples_s, b.sample_rounds, n.samples_s, n.sample_rounds, resamples=resamples
    )
    floors: dict[str, float] = {}
    if rounds is not None:
        result = SampleComparison(rounds.ratio, rounds.ci95, rounds.p_value)
        floors["rounds"] = rounds.floor
    else:
        result = compare_samples(b.samples_s, n.samples_s, resamples=resamples)
    spread = history_floor(history, HISTORY_MIN_RUNS)
    if spread is not None:
        floors[f"history of {len(history)} runs"] = spread
    floor = max(floors.values()) if floors else None
    verdict = classify(result, threshold, floor=floor)
    reason = f"noise floor {floor:.0%}" if floor is not None and verdict == "noisy" else ""
    yardsticks = _against_yardsticks(base, new)
    if verdict in ("regressed", "improved"):
        for entry_y in sorted(yardsticks, key=lambda y: -y.move):
            if not _moved_with(entry_y, verdict, threshold):
                continue
            relative = SampleComparison(
                entry_y.relative_ratio, entry_y.relative_ci95, entry_y.relative_p
            )
            limit = max(floor or 0.0, entry_y.relative_floor)
            if classify(relative, threshold, floor=limit) != verdict:
                low, high = entry_y.relative_ci95
                verdict = "noisy"
                reason = (
                    f"the machine moved: {entry_y.name} yardstick {entry_y.machine_ratio:.2f}x; "
                    f"relative to it this case moved {entry_y.relative_ratio:.2f}x "
                    f"({low:.2f}-{high:.2f}), not beyond {max(threshold, limit):.0%}"
                )
                break
    return entry.model_copy(
        update={
            "verdict": verdict,
            "reason": reason,
            "yardsticks": yardsticks,
            "ratio": result.ratio,
            "ratio_ci95": result.ci95,
            "p_value": result.p_value,
            "noise_floor": floor,
            "floor_source": " and ".join(floors),
            "history_runs": len(history),
        }
    )


def _moved_with(yardstick: YardstickComparison, verdict: Verdict, threshold: float) -> bool:
    """Whether a yardstick moved the way the case did (slower for `regressed`, faster for
    `improved`), significantly (p < ALPHA) and beyond the threshold: only such a move can
    explain the case's change. A yardstick that stayed put, moved the other way, or whose
    move is within its own reading noise, leaves the raw verdict alone (judging relative to
    it would only add that noise)."""
    ratio = yardstick.machine_ratio
    if not yardstick.machine_p < ALPHA:
        return False
    if verdict == "regressed":
        return ratio > 1.0 + threshold
    return ratio < 1.0 - threshold


COMBINED = "combined"
"""The name of the yardstick made of all the others: per round, the geometric mean of the
readings. Each yardstick alone may move too little for its own reading noise over a few rounds
while all of them moved the same way (a loaded host: 1.16-1.34x each, none significant over
five rounds); their mean has less noise and shows that move."""


def combined_readings(readings: dict[str, list[float]]) -> list[float]:
    """Per round (index r, over the rounds every yardstick read), the geometric mean of every
    yardstick's reading in `readings`. Empty with fewer than two yardsticks or when a reading
    is not positive (the rounds must stay aligned with the case's round labels)."""
    if len(readings) < 2:
        return []
    rounds = min(len(values) for values in readings.values())
    per_round = [[readings[name][r] for name in readings] for r in range(rounds)]
    if any(v <= 0 for values in per_round for v in values):
        return []
    return [math.exp(statistics.fmean(math.log(v) for v in values)) for values in per_round]


def _against_yardsticks(base: CaseResult, new: CaseResult) -> list[YardstickComparison]:
    """For each yardstick both results read in two or more rounds, and for their combination
    (`COMBINED`, `combined_readings` of the ones both read): its own change between the runs
    and the case's change relative to it (each round's median over the round's reading), both
    compared round by round (`stats.compare_per_round`)."""
    b, n = base.measurement, new.measurement
    if not (base.yardstick and new.yardstick and b and n):
        return []
    names = sorted(set(base.yardstick) & set(new.yardstick) - {COMBINED})
    old_all = {name: base.yardstick[name] for name in names}
    new_all = {name: new.yardstick[name] for name in names}
    series = {name: (old_all[name], new_all[name]) for name in names}
    if len(names) >= 2:
        series[COMBINED] = (combined_readings(old_all), combined_readings(new_all))
    found = []
    for name, (old_readings, new_readings) in series.items():
        machine = compare_per_round(old_readings, new_readings)
        relative = compare_per_round(
            relative_round_medians(b.samples_s, b.sample_rounds, old_readings),
            relative_round_medians(n.samples_s, n.sample_rounds, new_readings),
        )
        if machine is None or relative is None:
            continue
        found.append(
            YardstickComparison(
                name=name,
                machine_ratio=machine.ratio,
                machine_ci95=machine.ci95,
                machine_p=machine.p_value,
                relative_ratio=relative.ratio,
                relative_ci95=relative.ci95,
                relative_p=relative.p_value,
                relative_floor=relative.floor,
            )
        )
    return found


def _same_machine(run: RunRecord, other: RunRecord) -> bool:
    return (
        run.environment.hostname == other.environment.hostname
        and run.backend == other.backend
        and run.device.name == other.device.name
    )


def case_history(
    new: RunRecord, runs: list[RunRecord], case: CaseResult, exclude: set[str]
) -> list[float]:
    """Medians of `case` (same `CaseKey.identity`) in the ok runs of `runs` on the same host,
    backend and device as `new` that started before `new`, leaving out run ids in `exclude`,
    oldest first."""
    identity = case.key.identity()
    medians = []
    for run in sorted(runs, key=lambda r: r.started_at):
        if run.run_id in exclude or run.started_at >= new.started_at:
            continue
        if not _same_machine(run, new):
            continue
        for other in run.cases:
            if other.key.identity() == identity and other.status == "ok" and other.measurement:
                medians.append(other.measurement.median)
                break
    return medians


def compare_runs(
    base: RunRecord,
    new: RunRecord,
    thresholds: Thresholds | None = None,
    resamples: int = 2000,
    history: list[RunRecord] | None = None,
) -> RunComparison:
    """Match the cases of two runs by key and give each a verdict.

    `history`: other runs (e.g. the rest of the folders the two runs are in); those on the
    same machine started before `new` give each case a noise floor from the spread of their
    medians (the base run counts as one of them, `new` does not).

    Cases with the same key are compared; cases that match except for workload version,
    dtype, preset or batch are paired as not comparable with the reason; any case is not
    comparable when the backend or device differs. The rest are missing (only in base) or
    new (only in new).
    """
    thresholds = thresholds or Thresholds()
    device_reasons: list[str] = []
    if base.backend != new.backend:
        device_reasons.append(f"backend differs ({base.backend} vs {new.backend})")
    if base.device.name != new.device.name or base.device.count != new.device.count:
        device_reasons.append(
            f"device differs ({base.device.count}x {base.device.name} vs "
            f"{new.device.count}x {new.device.name})"
        )
    # Converge cases are not timed: harness.results.convergence_judge compares them by steps.
    base_exact = {case.key.identity(): case for case in base.cases if case.convergence is None}
    paired: list[tuple[CaseResult, CaseResult]] = []
    new_left: list[CaseResult] = []
    for case in (c for c in new.cases if c.convergence is None):
        match = base_exact.pop(case.key.identity(), None)
        if match is None:
            new_left.append(case)
        else:
            paired.append((match, case))
    base_by_identity: dict[str, list[CaseResult]] = defaultdict(list)
    for case in base_exact.values():
        base_by_identity[case.key.identity(ignoring=_MUST_MATCH)].append(case)
    only_new: list[CaseResult] = []
    loose: list[tuple[CaseResult, CaseResult]] = []
    for case in new_left:
        candidates = base_by_identity.get(case.key.identity(ignoring=_MUST_MATCH))
        if candidates:
            loose.append((candidates.pop(0), case))
        else:
            only_new.append(case)
    results: list[CaseComparison] = []
    earlier = [run for run in history or [] if run.run_id not in (base.run_id, new.run_id)]
    earlier.append(base)
    for old, now in paired:
        medians = case_history(new, earlier, now, {new.run_id})
        results.append(_compare_case(old, now, device_reasons, thresholds, resamples, medians))
    for old, now in loose:
        reasons = device_reasons + _key_differences(old.key, now.key)
        results.append(_compare_case(old, now, reasons, thresholds, resamples, []))
    for remaining in base_by_identity.values():
        for old in remaining:
            results.append(
                CaseComparison(
                    case_id=old.key.id, verdict="missing", base=old, reason="not in the new run"
                )
            )
    for now in only_new:
        results.append(
            CaseComparison(case_id=now.key.id, verdict="new", new=now, reason="not in the base run")
        )
    results.sort(key=lambda c: (VERDICTS.index(c.verdict), c.case_id))
    return RunComparison(
        base_run=base.run_id,
        new_run=new.run_id,
        differences=environment_differences(base, new),
        cases=results,
    )
