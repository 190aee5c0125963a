"""compare judges a change against the between-round variation of both runs and the spread of
earlier runs on the same machine: within that noise floor a change is never `regressed`."""

from __future__ import annotations

import numpy as np

from harness.analysis.compare import compare_runs
from harness.measurement.timing import summarize
from harness.results.schema import CaseKey, CaseResult, RunRecord
from tests.synthetic_runs import run

KEY = CaseKey(
    workload="mlp", workload_version="1", mode="train", dtype="fp32", batch=16, preset="tiny"
)


def in_rounds(level: float, drift: float, seed: int, rounds: int = 5) -> CaseResult:
    """A case measured in `rounds` rounds around `level` seconds, each round shifted by a
    log-normal factor of sd `drift`, with 1% noise within rounds."""
    rng = np.random.default_rng(seed)
    values: list[float] = []
    labels: list[int] = []
    for r, shift in enumerate(np.exp(rng.normal(0.0, drift, rounds))):
        values += [float(v) for v in level * shift * np.exp(rng.normal(0.0, 0.01, 20))]
        labels += [r] * 20
    m = summarize(values, iterations_per_sample=1, sample_rounds=labels)
    return CaseResult(key=KEY, status="ok", measurement=m)


def runs(base: CaseResult, new: CaseResult) -> tuple[RunRecord, RunRecord]:
    return run([base], index=0), run([new], index=1)


def test_a_change_within_the_between_round_noise_is_noisy_not_regressed() -> None:
    base, new = runs(in_rounds(1e-3, 0.10, seed=1), in_rounds(1.12e-3, 0.10, seed=2))
    (entry,) = compare_runs(base, new).cases
    # The single-window view of these samples (1% noise, 100 samples) would call 12% proven.
    assert entry.verdict in ("noisy", "unchanged")
    assert entry.noise_floor is not None and entry.noise_floor > 0.05
    assert entry.floor_source == "rounds"
    if entry.verdict == "noisy":
        assert entry.reason == f"noise floor {entry.noise_floor:.0%}"


def test_a_significant_change_not_shown_to_exceed_the_floor_is_noisy() -> None:
    """Like one case of a shared VM sitting in a slower state for most of one run's rounds:
    significant, beyond the threshold, but its CI reaches inside the between-round floor."""
    base, new = runs(in_rounds(1e-3, 0.12, seed=14), in_rounds(1.35e-3, 0.12, seed=15))
    (entry,) = compare_runs(base, new).cases
    assert entry.p_value is not None and entry.p_value < 0.05
    assert entry.ratio_ci95 is not None and entry.noise_floor is not None
    assert 1.10 < entry.ratio_ci95[0] < 1.0 + entry.noise_floor
    assert entry.verdict == "noisy"
    assert entry.reason == f"noise floor {entry.noise_floor:.0%}"


def test_a_real_slowdown_beyond_the_floor_is_regressed() -> None:
    base, new = runs(in_rounds(1e-3, 0.05, seed=3), in_rounds(1.7e-3, 0.05, seed=4))
    (entry,) = compare_runs(base, new).cases
    assert entry.verdict == "regressed"
    assert entry.ratio is not None and 1.5 < entry.ratio < 1.9
    assert entry.noise_floor is not None and entry.noise_floor < 0.3


def test_the_spread_of_earlier_runs_on_this_machine_raises_the_floor() -> None:
    levels = (1.0e-3, 1.2e-3, 0.85e-3, 1.1e-3)
    history = [
        run([in_rounds(level, 0.005, seed=10 + i)], index=i) for i, level in enumerate(levels)
    ]
    base = history[-1]
    new = run([in_rounds(1.25e-3, 0.005, seed=20)], index=10)
    alone = compare_runs(base, new).cases[0]
    assert alone.verdict == "regressed"  # tight rounds: 14% is resolved within these two runs
    judged = compare_runs(base, new, history=history).cases[0]
    assert judged.verdict == "noisy"
    assert judged.history_runs == 4
    assert judged.floor_source == "rounds and history of 4 runs"
    assert judged.noise_floor is not None and judged.noise_floor > 0.25
    elsewhere = history[0].environment.model_copy(update={"hostname": "elsewhere"})
    other_host = [r.model_copy(update={"environment": elsewhere}) for r in history[:-1]]
    assert compare_runs(base, new, history=other_host).cases[0].verdict == "regressed"


def test_single_round_files_are_judged_as_before() -> None:
    rng = np.random.default_rng(5)
    base, new = (
        CaseResult(
            key=KEY,
            status="ok",
            measurement=summarize(
                [float(v) for v in level * (1 + 0.01 * rng.standard_normal(30))],
                iterations_per_sample=1,
            ),
        )
        for level in (1e-3, 2e-3)
    )
    (entry,) = compare_runs(*runs(base, new)).cases
    assert entry.verdict == "regressed" and entry.noise_floor is None
