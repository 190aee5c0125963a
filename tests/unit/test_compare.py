"""bench compare's statistics and verdicts on synthetic runs (real scipy, no mocks)."""

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.compare import (
    Thresholds,
    classify,
    compare_runs,
    environment_differences,
    load_thresholds,
    parse_threshold,
)
from harness.errors import BenchError
from harness.stats import SampleComparison, compare_samples
from tests.synthetic_runs import case, run, samples


def test_a_2x_slowdown_is_significant_with_a_tight_ratio_ci() -> None:
    result = compare_samples(samples(1e-3, seed=1), samples(2e-3, seed=2))
    assert result.ratio == pytest.approx(2.0, rel=0.05)
    assert 1.8 < result.ci95[0] <= result.ratio <= result.ci95[1] < 2.2
    assert result.p_value < 1e-6
    assert classify(result, 0.05) == "regressed"


def test_same_distribution_is_unchanged_in_nearly_every_draw() -> None:
    """False-positive check: 200 pairs from one distribution, none may regress."""
    verdicts = [
        classify(
            compare_samples(
                samples(1e-3, seed=2 * i), samples(1e-3, seed=2 * i + 1), resamples=500
            ),
            0.05,
        )
        for i in range(200)
    ]
    assert verdicts.count("regressed") + verdicts.count("improved") == 0
    assert verdicts.count("unchanged") >= 195


@pytest.mark.parametrize(
    ("result", "verdict"),
    [
        (SampleComparison(1.5, (1.4, 1.6), 0.001), "regressed"),
        (SampleComparison(0.5, (0.4, 0.6), 0.001), "improved"),
        (SampleComparison(1.5, (1.4, 1.6), 0.2), "noisy"),  # big, not significant
        (SampleComparison(1.08, (1.02, 1.15), 0.001), "noisy"),  # CI not wholly beyond 5%
        (SampleComparison(1.03, (1.02, 1.04), 0.001), "unchanged"),  # significant but small
        (SampleComparison(1.0, (1.0, 1.0), float("nan")), "unchanged"),
    ],
)
def test_classify_needs_significance_and_a_ci_beyond_the_threshold(
    result: SampleComparison, verdict: str
) -> None:
    assert classify(result, 0.05) == verdict


def test_identical_constant_samples_compare_as_unchanged() -> None:
    result = compare_samples([1.0] * 10, [1.0] * 10)
    assert result.ratio == 1.0 and result.ci95 == (1.0, 1.0)


def test_compare_runs_gives_every_verdict_with_reasons() -> None:
    base = run(
        [
            case(samples(1e-3, seed=1), mode="train"),
            case(samples(1e-3, seed=2), mode="infer"),
            case(samples(1e-3, seed=3), mode="prefill"),
            case(samples(1e-3, seed=4), mode="decode", dtype="bf16"),
            case(samples(1e-3, seed=5), workload="gpt"),
            case(samples(1e-3, seed=6), workload="cnn"),
            case(samples(1e-3, seed=7), workload="old"),
        ]
    )
    new = run(
        [
            case(samples(2e-3, seed=11), mode="train"),  # 2x slower
            case(samples(0.5e-3, seed=12), mode="infer"),  # 2x faster
            case(samples(1e-3, seed=13), mode="prefill"),
            case(samples(1e-3, seed=14), mode="decode", dtype="fp16"),
            case(samples(1e-3, seed=15), workload="gpt", workload_version="2", batch=8),
            case(None, workload="cnn"),
            case(samples(1e-3, seed=17), workload="newcomer"),
        ],
        index=1,
    )
    result = compare_runs(base, new)
    by_id = {entry.case_id.split(" vs ")[0]: entry for entry in result.cases}
    assert by_id["mlp/train/fp32/b16/tiny"].verdict == "regressed"
    assert by_id["mlp/infer/fp32/b16/tiny"].verdict == "improved"
    assert by_id["mlp/prefill/fp32/b16/tiny"].verdict == "unchanged"
    decode = by_id["mlp/decode/bf16/b16/tiny"]
    assert decode.verdict == "not comparable" and decode.reason == "dtype differs (bf16 vs fp16)"
    gpt = by_id["gpt/train/fp32/b16/tiny"]
    assert gpt.verdict == "not comparable"
    assert gpt.reason == "workload_version differs (1 vs 2); batch differs (16 vs 8)"
    assert by_id["cnn/train/fp32/b16/tiny"].verdict == "failed"
    assert "exception: boom" in by_id["cnn/train/fp32/b16/tiny"].reason
    assert by_id["old/train/fp32/b16/tiny"].verdict == "missing"
    assert by_id["newcomer/train/fp32/b16/tiny"].verdict == "new"
    assert result.counts() == {
        "regressed": 1,
        "failed": 1,
        "improved": 1,
        "unchanged": 1,
        "not comparable": 2,
        "missing": 1,
        "new": 1,
    }
    assert {e.verdict for e in result.gate_failures()} == {"regressed", "failed"}
    assert result.cases[0].verdict == "regressed"  # worst news first


def test_a_different_device_makes_every_case_not_comparable() -> None:
    base = run([case(samples(1e-3))])
    new = run([case(samples(1e-3, seed=9))], index=1, device="Other CPU")
    (entry,) = compare_runs(base, new).cases
    assert entry.verdict == "not comparable"
    assert entry.reason.startswith("device differs (1x ") and "Other CPU" in entry.reason


def test_preset_difference_is_named() -> None:
    base = run([case(samples(1e-3), preset="tiny")])
    new = run([case(samples(1e-3, seed=9), preset="small")], index=1)
    (entry,) = compare_runs(base, new).cases
    assert entry.reason == "preset differs (tiny vs small)"


def test_machine_and_library_differences_are_listed() -> None:
    base = run([], torch_version="2.12.0", hostname="a", torch_threads=4)
    new = run([], index=1, torch_version="2.13.0", hostname="b", torch_threads=4)
    assert environment_differences(base, new) == ["host: a -> b", "torch version: 2.12.0 -> 2.13.0"]
    assert environment_differences(base, base) == []


def test_per_workload_thresholds_turn_a_regression_into_unchanged() -> None:
    base = run([case(samples(1e-3, noise=0.005, seed=1))])
    new = run([case(samples(1.15e-3, noise=0.005, seed=2))], index=1)
    assert compare_runs(base, new).cases[0].verdict == "regressed"
    loose = Thresholds(workloads={"mlp": "20%"})  # type: ignore[dict-item]
    entry = compare_runs(base, new, loose).cases[0]
    assert entry.verdict == "unchanged" and entry.threshold == pytest.approx(0.2)


def test_a_significant_change_under_the_default_threshold_is_not_a_regression() -> None:
    base = run([case(samples(1e-3, noise=0.005, seed=1))])
    new = run([case(samples(1.07e-3, noise=0.005, seed=2))], index=1)
    entry = compare_runs(base, new).cases[0]
    assert entry.p_value is not None and entry.p_value < 0.05
    assert entry.verdict == "unchanged" and entry.threshold == pytest.approx(0.10)
    strict = compare_runs(base, new, Thresholds(default="3%")).cases[0]  # type: ignore[arg-type]
    assert strict.verdict == "regressed"


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), (" 12.5% ", 0.125)])
def test_parse_threshold(text: str, value: float) -> None:
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "abc", "0%", "-3%", "150%"])
def test_bad_thresholds_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="5%"):
        parse_threshold(text)


def test_thresholds_file_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "t.toml"
    toml.write_text('default = "3%"\n[workloads]\ngpt = "10%"\nmlp = 0.2\n')
    loaded = load_thresholds(toml)
    assert loaded.default == pytest.approx(0.03)
    assert loaded.for_workload("gpt") == pytest.approx(0.1)
    assert loaded.for_workload("other") == pytest.approx(0.03)
    assert load_thresholds(toml, default=0.07).for_workload("other") == pytest.approx(0.07)
    js = tmp_path / "t.json"
    js.write_text(json.dumps({"workloads": {"mlp": "8%"}}))
    assert load_thresholds(js).for_workload("mlp") == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.toml", "default = [", "is not valid TOML"),
        ("t.json", "{", "is not valid JSON"),
        ("t.yaml", "default: 5%", "must end in .toml or .json"),
        ("t.toml", 'default = "fast"', "default: threshold must be like 5% or 0.05"),
        ("t.toml", "[workloads]\ngpt = 3", "workloads.gpt"),
        ("t.toml", 'defualt = "5%"', "defualt: Extra inputs are not permitted"),
        ("t.json", "[1, 2]", "must hold a table"),
    ],
)
def test_thresholds_file_errors_name_the_file_and_problem(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BenchError, match="thresholds file") as info:
        load_thresholds(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_thresholds_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="cannot read thresholds file"):
        load_thresholds(tmp_path / "nope.toml")


def test_bootstrap_is_deterministic() -> None:
    a, b = samples(1e-3, seed=1), samples(1.1e-3, seed=2)
    assert compare_samples(a, b) == compare_samples(a, b)
    assert np.isfinite(compare_samples(a, b).p_value)
