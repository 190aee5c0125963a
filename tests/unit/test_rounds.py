"""Rounds: the hierarchical CI of the median, the paired per-round ratio, the round schedule,
the per-round budget, round jobs reusing built cases, and version-1 files loading as one round."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from harness import stats
from harness.measurement.timing import summarize
from harness.results.config import MeasureSettings, RunConfig
from harness.results.schema import CaseKey, Measurement
from harness.results.store import load_run
from harness.run.case import RoundResult, RoundSpec
from harness.run.execute import _BUILT, clear_cache, execute_round
from harness.run.fold import fold_rounds
from harness.run.pipeline import round_settings
from harness.run.plan import plan_cases
from harness.run.schedule import case_groups, round_schedule
from tests.synthetic_runs import case, run


def drifting(
    seed: int, rounds: int = 5, per_round: int = 20, between: float = 0.08, within: float = 0.03
) -> tuple[list[float], list[int]]:
    """Samples whose true median is 1: each round has its own log-normal level (the drift of a
    shared machine), and log-normal noise within the round."""
    rng = np.random.default_rng(seed)
    values: list[float] = []
    labels: list[int] = []
    for r, level in enumerate(np.exp(rng.normal(0.0, between, rounds))):
        values += list(level * np.exp(rng.normal(0.0, within, per_round)))
        labels += [r] * per_round
    return values, labels


def test_hierarchical_ci_covers_the_true_median_where_the_single_window_ci_does_not() -> None:
    trials = 60
    honest = window = 0
    for seed in range(trials):
        values, labels = drifting(seed)
        low, high = stats.hierarchical_median_ci(values, labels, resamples=1000, seed=seed)
        honest += low <= 1.0 <= high
        low, high = stats.bootstrap_median_ci(values, resamples=1000, seed=seed)
        window += low <= 1.0 <= high
    assert honest / trials >= 0.9, honest
    assert window / trials <= 0.5, window


def test_hierarchical_ci_edge_cases() -> None:
    values, labels = drifting(0, rounds=1)
    assert stats.hierarchical_median_ci(values, labels) == stats.bootstrap_median_ci(values)
    assert all(math.isnan(x) for x in stats.hierarchical_median_ci([], []))
    assert stats.hierarchical_median_ci([2.0] * 6, [0, 0, 1, 1, 2, 2]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="sample_rounds has 2 entries for 3 samples"):
        stats.hierarchical_median_ci([1.0, 2.0, 3.0], [0, 1])
    low, high = stats.hierarchical_median_ci([1.0, 1.2, 0.9, 1.1], [0, 1, 2, 3])
    assert low <= float(np.median([1.0, 1.2, 0.9, 1.1])) <= high


def test_every_round_counts_once_in_the_headline_however_many_samples_it_took() -> None:
    """Time-budgeted rounds: the slow rounds (4.9, 6.0, 6.2 ms) took few samples, the fast
    ones (3.4 ms) many; the pooled median would say 3.4 ms."""
    levels, counts = (4.9e-3, 6.0e-3, 6.2e-3, 3.4e-3, 3.4e-3), (4, 3, 3, 12, 12)
    values = [level for level, n in zip(levels, counts, strict=True) for _ in range(n)]
    labels = [r for r, n in enumerate(counts) for _ in range(n)]
    assert float(np.median(values)) == pytest.approx(3.4e-3)
    assert stats.median_of_rounds(values, labels) == pytest.approx(4.9e-3)
    m = summarize(values, iterations_per_sample=1, sample_rounds=labels)
    assert m.median == pytest.approx(4.9e-3)
    assert m.ci95[0] <= m.median <= m.ci95[1]
    assert stats.median_of_rounds([3.0, 1.0, 2.0], []) == 2.0  # unlabelled: one round
    assert math.isnan(stats.median_of_rounds([], []))
    base_values = [1e-3 * (1.0 + 0.01 * i) for i in range(6)]  # round medians 1.005-1.045
    base = summarize(base_values, iterations_per_sample=1, sample_rounds=[0, 0, 1, 1, 2, 2])
    compared = stats.compare_rounds(
        base.samples_s, base.sample_rounds, values, labels, resamples=200
    )
    assert compared is not None and compared.ratio == pytest.approx(4.9 / 1.025)


def test_paired_ratio_cancels_drift_shared_by_both_modes() -> None:
    rng = np.random.default_rng(3)
    train: list[float] = []
    infer: list[float] = []
    labels: list[int] = []
    for r, level in enumerate(np.exp(rng.normal(0.0, 0.2, 5))):  # 20% drift between rounds
        train += list(3.0 * level * np.exp(rng.normal(0.0, 0.01, 15)))
        infer += list(level * np.exp(rng.normal(0.0, 0.01, 15)))
        labels += [r] * 15
    paired = stats.paired_round_ratio(train, labels, infer, labels)
    assert paired.rounds == 5
    assert paired.value == pytest.approx(3.0, rel=0.02)
    assert paired.ci95[0] <= 3.0 <= paired.ci95[1]
    assert paired.ci95[1] / paired.ci95[0] < 1.05  # the drift cancels in each round's ratio
    # One round per side (old files): the independent bootstrap of the two sample sets.
    single = stats.paired_round_ratio(train[:15], [], infer[:15], [])
    assert single.rounds == 1
    assert single.ci95 == stats.bootstrap_median_ratio_ci(train[:15], infer[:15])


def _keys() -> list[CaseKey]:
    config = RunConfig(workloads=["mlp", "gpt", "matmul"], modes=["probe", "train", "infer"])
    return [spec.key for spec in plan_cases(config)]


def test_round_schedule_is_reproducible_from_its_seed_and_pairs_modes() -> None:
    keys = _keys()
    (segment,) = round_schedule(keys, rounds=4, seed=11, interleave="run")
    again = round_schedule(keys, rounds=4, seed=11, interleave="run")[0]
    assert segment == again
    jobs = [(job.case, job.round) for job in segment.jobs]
    assert sorted(jobs) == sorted((c, r) for c in range(len(keys)) for r in range(4))
    orders = {seed: round_schedule(keys, 4, seed, "run")[0] for seed in range(8)}
    assert len({json.dumps(s.model_dump()) for s in orders.values()}) > 1
    groups = case_groups(keys)
    pair = next(g for g in groups if len(g) == 2)
    for r in range(4):
        in_round = [job.case for job in segment.jobs if job.round == r]
        first = in_round.index(pair[0])
        assert set(in_round[min(first, in_round.index(pair[1])) :][:2]) == set(pair)
        assert in_round.index(pair[r % 2]) < in_round.index(pair[1 - r % 2])  # alternates
    by_group = round_schedule(keys, rounds=3, seed=11, interleave="workload")
    assert sorted(sorted({job.case for job in s.jobs}) for s in by_group) == sorted(groups)


def test_the_budget_of_a_case_is_split_across_its_rounds() -> None:
    settings = MeasureSettings(warmup_s=0.2, min_samples=10, max_time_s=2.0)
    first = round_settings(settings, 5, first=True)
    later = round_settings(settings, 5, first=False)
    assert first.max_time_s * 5 == pytest.approx(2.0)
    assert first.warmup_s == 0.2 and later.warmup_s == pytest.approx(0.04)
    assert first.min_samples == 2 and later.warmup_iterations == 1


def test_round_jobs_reuse_the_built_case_and_the_parent_folds_every_round() -> None:
    config = RunConfig(workloads=["mlp"], modes=["infer"], preset="tiny")
    (spec,) = plan_cases(config)
    clear_cache()
    try:
        first = execute_round(RoundSpec(case=spec, round=0, rounds=3))
        assert first.status == "ok", first.error
        (built,) = _BUILT.values()
        second = execute_round(RoundSpec(case=spec, round=1, rounds=3))
        assert list(_BUILT.values()) == [built]
    finally:
        clear_cache()
    with pytest.raises(ValidationError):  # a round result is immutable
        first.samples_s = []  # type: ignore[misc]
    assert first.cold_start_s is not None and second.cold_start_s is None
    assert second.iterations_per_sample == first.iterations_per_sample
    folded = fold_rounds(spec.key, [first, second], spec.measure.precision)
    m = folded.measurement
    assert m is not None and folded.status == "ok"
    assert m.rounds == 2 and m.sample_rounds == [0] * first_n(first) + [1] * first_n(second)
    assert m.samples_s == first.samples_s + second.samples_s
    assert m.cold_start_s == first.cold_start_s
    assert m.median == stats.median_of_rounds(m.samples_s, m.sample_rounds)
    assert folded.peak_memory_bytes == first.peak_memory_bytes
    assert folded.started_at == first.started_at
    assert folded.duration_s == pytest.approx((first.duration_s or 0) + (second.duration_s or 0))
    assert folded.yardstick is not None
    assert all(len(series) == 2 for series in folded.yardstick.values())
    assert m.ci95_within_round == stats.bootstrap_median_ci(m.samples_s)


def first_n(result: RoundResult) -> int:
    return len(result.samples_s)


def test_a_failed_round_fails_the_case_with_its_error() -> None:
    config = RunConfig(workloads=["mlp"], modes=["infer"], preset="tiny")
    (spec,) = plan_cases(config)
    ok = RoundResult(key=spec.key, round=0, samples_s=[1.0, 1.1], work_items=1, work_unit="x")
    bad = RoundResult.model_validate(
        {
            "key": spec.key,
            "round": 1,
            "status": "failed",
            "error": {"kind": "crash", "message": "m"},
        }
    )
    folded = fold_rounds(spec.key, [ok, bad])
    assert folded.status == "failed" and folded.error is not None
    assert (folded.error.kind, folded.error.message) == ("crash", "m")


def test_a_version_1_file_loads_as_one_round(tmp_path: Path) -> None:
    record = run([case([1.0, 1.1, 0.9, 1.05])])
    data = json.loads(record.model_dump_json())
    data["schema_version"] = 1
    for item in data["cases"]:
        for field in ("sample_rounds", "rounds", "ci95_within_round"):
            del item["measurement"][field]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    (loaded,) = load_run(path).cases
    m = loaded.measurement
    assert m is not None
    assert m.sample_rounds == [0, 0, 0, 0] and m.rounds == 1
    assert m.ci95_within_round == m.ci95


def test_sample_rounds_must_match_the_samples() -> None:
    data = summarize([1.0, 2.0, 3.0], iterations_per_sample=1).model_dump()
    data["sample_rounds"] = [0, 1]
    with pytest.raises(ValueError, match="sample_rounds has 2 entries for 3 samples"):
        Measurement.model_validate(data)


def test_stable_and_stability_use_the_ci_over_rounds() -> None:
    values, labels = drifting(1, between=0.2, within=0.001)
    m = summarize(values, iterations_per_sample=1, sample_rounds=labels, precision=0.01)
    assert m.rounds == 5 and not m.stable and m.stability != "ok"
    w_low, w_high = m.ci95_within_round or (0.0, 0.0)
    assert m.ci95[1] - m.ci95[0] > 2 * (w_high - w_low)


def test_history_floor_is_a_prediction_band_that_widens_when_runs_are_few() -> None:
    assert stats.history_floor([1.0]) is None
    assert stats.history_floor([1.0, 1.1, 1.2], minimum_runs=4) is None
    # Two runs 10% apart: s = log(1.1)/sqrt(2), t(1 df) = 12.71.
    two = stats.history_floor([1.0, 1.1])
    assert two == pytest.approx(math.expm1(12.706 * math.log(1.1)), rel=1e-3)
    # Many runs of the same spread: t tends to 1.96, the band to exp(1.96 sqrt(2) s) - 1.
    rng = np.random.default_rng(0)
    many = np.exp(rng.normal(0.0, 0.05, 400))
    s = float(np.std(np.log(many), ddof=1))
    band = math.expm1(1.966 * math.sqrt(2) * s)
    assert stats.history_floor(many) == pytest.approx(band, rel=1e-2)
    # The coverage this band promises: the ratio of two fresh runs falls outside it ~5% of
    # the time when the floor comes from 3 earlier runs (~18% with a fixed t = 2).
    outside = 0
    for _ in range(2000):
        earlier = np.exp(rng.normal(0.0, 0.05, 3))
        floor = stats.history_floor(earlier)
        assert floor is not None
        a, b = np.exp(rng.normal(0.0, 0.05, 2))
        outside += abs(math.log(b / a)) > math.log1p(floor)
    assert 0.03 < outside / 2000 < 0.07


def test_every_round_of_a_training_case_starts_from_the_same_training_state() -> None:
    config = RunConfig(workloads=["mlp"], modes=["train"], preset="tiny")
    (spec,) = plan_cases(config)
    clear_cache()
    try:
        execute_round(RoundSpec(case=spec, round=0, rounds=2))
        (built,) = _BUILT.values()
        assert built.state is not None and built.state_bytes > 0
        instance = built.instance
        model = instance.stateful()["model"]
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        instance.restore(built.state)
        fresh = model.state_dict()
        assert any(not torch.equal(trained[k], fresh[k]) for k in trained)  # it had trained
        for k, v in built.state["objects"]["model"].items():
            assert torch.equal(fresh[k], v)
        assert instance.stateful()["optimizer"].state == {}  # AdamW as built: no moments yet
        built.step()
        instance.restore(built.state)  # the snapshot survives a restore and a step
        for k, v in built.state["objects"]["model"].items():
            assert torch.equal(model.state_dict()[k], v)
    finally:
        clear_cache()
