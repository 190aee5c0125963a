"""`bench compare`, `bench plot`, `bench export` and `harness.load_runs` on real tiny runs
(made once per module with the real CLI) and on synthetic runs for the statistical cases."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.measurement.timing import summarize
from harness.results.schema import RunRecord
from harness.results.store import load_run, save_run
from tests.conftest import invoke_bench, run_bench
from tests.synthetic_runs import case, run, samples

TRAIN = "mlp/train/fp32/b16/tiny"
INFER = "mlp/infer/fp32/b16/tiny"


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two back-to-back real tiny runs of mlp on the CPU, oldest first."""
    out = tmp_path_factory.mktemp("results")
    for label in ("first", "second"):
        proc = run_bench(
            "run", "--backend", "cpu", "--workload", "mlp", "--preset", "tiny",
            "--isolate", "none", "--label", label, "--out", str(out),
            env={"OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    return sorted(out.glob("*.json"), key=lambda p: load_run(p).started_at)


def with_samples(record: RunRecord, case_id: str, data: list[float]) -> RunRecord:
    """A copy of record whose case `case_id` was measured as `data` (synthetic samples: the
    real ones of a loaded machine can be too noisy for a deterministic verdict)."""
    copy = record.model_copy(deep=True)
    for result in copy.cases:
        if result.key.id == case_id:
            result.measurement = summarize(data, iterations_per_sample=1)
    return copy


def write(record: RunRecord, path: Path) -> Path:
    save_run(record, path)
    return path


def test_two_real_runs_compare_on_one_machine_and_the_gate_follows_the_table(
    real_runs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real runs: the table, the noise floor and the same-machine statement. Whether this
    machine held still between them is not the test's to decide (a shared host can slow a
    case by a third between two runs), so the gate is checked against the table it printed."""
    base, new = real_runs
    result = invoke_bench(capsys, "compare", str(base), str(new), "--fail-on-regression")
    assert "same machine, device and libraries." in result.stdout
    assert TRAIN in result.stdout and INFER in result.stdout
    assert "noise floor" in result.stdout
    assert "2 case(s) had fewer than 2 earlier runs on this machine" in result.stdout
    rows = [line for line in result.stdout.splitlines() if TRAIN in line or INFER in line]
    gated = [line for line in rows if "regressed" in line or "failed" in line]
    assert result.returncode == (1 if gated else 0), result.stdout


def test_the_same_measurements_again_are_unchanged_and_pass_the_gate(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = load_run(real_runs[0])
    again = record.model_copy(
        update={"run_id": "again", "started_at": record.started_at + timedelta(minutes=1)}
    )
    path = write(again, tmp_path / "again.json")
    result = invoke_bench(capsys, "compare", str(real_runs[0]), str(path), "--fail-on-regression")
    assert result.returncode == 0, result.stdout
    assert "verdicts: 2 unchanged" in result.stdout
    assert "same machine, device and libraries." in result.stdout


def test_a_2x_slowdown_is_a_regression_naming_the_case(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = load_run(real_runs[0])
    base = write(with_samples(record, TRAIN, samples(1e-3, seed=1)), tmp_path / "base.json")
    new = write(with_samples(record, TRAIN, samples(2e-3, seed=2)), tmp_path / "slow.json")
    gated = invoke_bench(capsys, "compare", str(base), str(new), "--fail-on-regression")
    assert gated.returncode == 1
    assert f"1 case(s) regressed or failed: {TRAIN}" in gated.stdout
    row = next(line for line in gated.stdout.splitlines() if TRAIN in line)
    assert "regressed" in row
    assert float(row.split("│")[4].split()[0]) == pytest.approx(2.0, rel=0.1)
    assert "1 regressed, 1 unchanged" in gated.stdout  # infer: the same samples
    plain = invoke_bench(capsys, "compare", str(base), str(new))
    assert plain.returncode == 0 and "regressed" in plain.stdout


def test_not_comparable_missing_and_new_through_the_cli(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = load_run(real_runs[0])
    other = base.model_copy(deep=True)
    other.cases[0].key = other.cases[0].key.model_copy(update={"batch": 8})
    other.cases[1].key = other.cases[1].key.model_copy(update={"workload": "gpt"})
    path = write(other, tmp_path / "other.json")
    result = invoke_bench(capsys, "compare", str(real_runs[0]), str(path), "--fail-on-regression")
    assert result.returncode == 0
    assert "not comparable: batch differs (16 vs 8)" in result.stdout
    assert "missing: not in the new run" in result.stdout
    assert "new: not in the base run" in result.stdout


def test_a_folder_means_its_latest_run_and_differences_are_stated(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = load_run(real_runs[0])
    base.environment.torch_version = "0.0.1-old"
    old = write(base, tmp_path / "old.json")
    result = invoke_bench(capsys, "compare", str(old), str(real_runs[0].parent))
    assert result.returncode == 0
    assert f"new:  {real_runs[1]}" in result.stdout.replace("\n", "")
    assert "the runs differ in:" in result.stdout
    assert "torch version: 0.0.1-old ->" in result.stdout


def test_thresholds_file_and_option_errors_exit_2(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = map(str, real_runs)
    bad = invoke_bench(capsys, "compare", a, b, "--threshold", "lots")
    assert bad.returncode == 2 and "--threshold: threshold must be like 5% or 0.05" in bad.stderr
    config = tmp_path / "limits.toml"
    config.write_text('[workloads]\nmlp = "200%"\n')
    broken = invoke_bench(capsys, "compare", a, b, "--thresholds", str(config))
    assert broken.returncode == 2
    assert "is invalid (workloads.mlp: threshold must be above 0%" in broken.stderr.replace(
        "\n", ""
    )
    config.write_text('default = "4%"\n[workloads]\nmlp = "50%"\n')
    record = load_run(a)
    base = write(with_samples(record, TRAIN, samples(1e-3, seed=1)), tmp_path / "base.json")
    slow = write(with_samples(record, TRAIN, samples(1.3e-3, seed=2)), tmp_path / "slow.json")
    regressed = invoke_bench(capsys, "compare", str(base), str(slow), "--fail-on-regression")
    assert regressed.returncode == 1
    ok = invoke_bench(capsys, "compare", str(base), str(slow), "--thresholds", str(config),
                      "--fail-on-regression")  # fmt: skip
    assert ok.returncode == 0 and "±50%" in ok.stdout


@pytest.mark.parametrize("command", ["compare", "plot", "export"])
def test_unreadable_files_named_explicitly_exit_2_and_in_folders_warn(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    truncated = tmp_path / "truncated.json"
    truncated.write_text(real_runs[0].read_text()[:200])
    args = {
        "compare": [str(truncated), str(real_runs[0])],
        "plot": [str(truncated), "--out", str(tmp_path / "p")],
        "export": [str(truncated), "--format", "csv", "--out", str(tmp_path / "x.csv")],
    }[command]
    result = invoke_bench(capsys, command, *args)
    assert result.returncode == 2
    assert "not valid JSON (truncated?)" in result.stderr and "Traceback" not in result.stderr
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.json").write_text(real_runs[0].read_text())
    (folder / "foreign.json").write_text('{"hello": 1}')
    (folder / "future.json").write_text('{"schema_version": 99, "run_id": "x"}')
    args[0] = str(folder)
    result = invoke_bench(capsys, command, *args)
    assert result.returncode == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert "foreign.json is not an accelbench results file" in err
    assert "future.json was written by a newer accelbench" in err


def test_empty_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke_bench(capsys, "export", str(tmp_path), "--format", "csv")
    assert result.returncode == 2 and "no usable results file in" in result.stderr


def test_history_plot_of_several_runs_marks_a_step(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "history"
    folder.mkdir()
    for index in range(8):
        level = 1e-3 if index < 4 else 1.25e-3
        record = run([case(samples(level, noise=0.01, seed=index))], index=index,
                     commit=f"{index:040x}")  # fmt: skip
        write(record, folder / f"run{index}.json")
    out = tmp_path / "plots"
    result = invoke_bench(capsys, "plot", str(folder), str(real_runs[0]), "--history",
                          "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"change point: {TRAIN}" in result.stdout and "(+25" in result.stdout
    for suffix in ("png", "svg"):
        path = out / f"history.{suffix}"
        assert path.stat().st_size > 10_000
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by_commit = invoke_bench(capsys, "plot", str(folder), "--history", "--by", "commit",
                             "--out", str(out / "c"))  # fmt: skip
    assert by_commit.returncode == 0 and (out / "c" / "history.svg").exists()
    bad = invoke_bench(capsys, "plot", str(folder), "--history", "--by", "weather")
    assert bad.returncode == 2 and "choose from: time, commit" in bad.stderr


def test_history_of_only_failed_cases_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(run([case(None)]), tmp_path / "failed.json")
    result = invoke_bench(capsys, "plot", str(path), "--history", "--out", str(tmp_path))
    assert result.returncode == 2 and "no successful case" in result.stderr


def test_throughput_bars_of_several_runs(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke_bench(capsys, "plot", *map(str, real_runs), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    svg = (tmp_path / "throughput.svg").read_text()
    assert "train vs infer throughput" in svg and "samples/s" in svg
    assert (tmp_path / "throughput.png").stat().st_size > 10_000


def test_export_csv_and_parquet_round_trip(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"run.{fmt}"
        result = invoke_bench(capsys, "export", str(real_runs[0]), "--format", fmt,
                              "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
        assert sorted(frame["case_id"]) == [INFER, TRAIN]
        assert set(frame["label"]) == {"first"}
        assert (frame["median_s"] > 0).all() and (frame["throughput_unit"] == "samples/s").all()


def test_parquet_without_pyarrow_names_the_extra(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = invoke_bench(capsys, "export", str(real_runs[0]), "--format", "parquet",
                          "--out", str(tmp_path / "x.parquet"))  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'accelbench[parquet]'" in result.stderr.replace("\n", "")
    unknown = invoke_bench(capsys, "export", str(real_runs[0]), "--format", "xml")
    assert unknown.returncode == 2
    assert "choose from: csv, parquet, pytest-benchmark" in unknown.stderr


def test_pytest_benchmark_compare_renders_an_export(
    real_runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "0001_run.json"
    result = invoke_bench(capsys, "export", str(real_runs[0]), "--format", "pytest-benchmark",
                          "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(data)
    stats = data["benchmarks"][0]["stats"]
    for field in ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3",
                  "iqr_outliers", "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops",
                  "total", "iterations", "data"):  # fmt: skip
        assert field in stats
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(out), "--columns",
         "min,median,mean,iqr,outliers,ops,rounds"],
        capture_output=True, text=True, check=False, timeout=60,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "benchmark 'mlp': 2 tests" in proc.stdout
    assert "mlp[train-fp32-16-tiny" in proc.stdout and "mlp[infer-fp32-16-tiny" in proc.stdout
    assert "Median" in proc.stdout and "OPS" in proc.stdout


def test_pytest_benchmark_stats_match_pytest_benchmark() -> None:
    from pytest_benchmark.stats import Stats

    from harness.results.export import pytest_benchmark_stats

    for n in (1, 2, 5, 10, 11, 13, 20):
        data = samples(1e-3, n=n, noise=0.2, seed=n)
        reference = Stats()
        for value in data:
            reference.update(value)
        assert pytest_benchmark_stats(data) == pytest.approx(reference.as_dict()), n


def test_load_runs_dataframe_api(real_runs: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    for path in real_runs:
        (folder / path.name).write_text(path.read_text())
    (folder / "broken.json").write_text("{")
    with pytest.warns(UserWarning, match=r"broken\.json is not valid JSON"):
        frame = harness.load_runs(folder)
    assert len(frame) == 4
    assert list(frame["label"]) == ["first", "first", "second", "second"]
    assert {"run_id", "started_at", "backend", "device", "host", "git_commit", "torch_version",
            "case_id", "status", "median_s", "ci95_low_s", "ci95_high_s", "throughput",
            "throughput_unit", "mfu", "peak_memory_bytes"} <= set(frame.columns)  # fmt: skip
    assert str(frame["started_at"].dtype).startswith("datetime64")
    assert list(frame["rounds"]) == [5, 5, 5, 5]  # the tiny preset's default rounds
    within = frame["ci95_within_round_high_s"] - frame["ci95_within_round_low_s"]
    assert (within > 0).all()
    assert frame.attrs["skipped"] and "broken.json" in frame.attrs["skipped"][0]
    train = frame[frame["mode"] == "train"].set_index("label")["median_s"]
    assert train.loc["first"] > 0 and train.loc["second"] > 0
    single = harness.load_runs(real_runs[0])
    assert len(single) == 2
