"""`bench run --fidelity` and `bench report` end to end, as a user types them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.store import load_run, save_run
from tests.conftest import invoke_bench, run_bench
from tests.run_records import HOSTILE, record


def _flat(text: str) -> str:
    """Text without whitespace: rich wraps long lines (and paths) at the console width."""
    return "".join(text.split())


def test_run_with_fidelity_stores_checks_and_prints_their_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    result = invoke_bench(
        capsys, "run", "--workload", "mlp", "--preset", "tiny", "--mode", "infer",
        "--fidelity", "--reference", "cpu:fp64", "--isolate", "none", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("*.json")
    run = load_run(path)
    assert run.config.fidelity is True and run.config.reference == "cpu:fp64"
    (check,) = run.fidelity
    assert (check.workload, check.dtype, check.preset, check.steps) == ("mlp", "fp32", "tiny", 20)
    assert check.reference == "cpu:fp64" and check.verdict == "pass"
    assert len(check.target_loss) == 20 and check.deterministic is True
    assert "training fidelity" in result.stdout and "pass" in result.stdout
    assert "make the report with" not in result.stdout  # no report unless the default suite


def test_fidelity_is_off_by_default_when_workloads_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    result = invoke_bench(
        capsys, "run", "--workload", "mlp", "--preset", "tiny", "--mode", "infer",
        "--isolate", "none", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("*.json")
    assert load_run(path).fidelity == []


def test_bad_reference_is_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = invoke_bench(
        capsys, "run", "--workload", "mlp", "--preset", "tiny", "--fidelity",
        "--reference", "cpu:fp8", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown --reference 'cpu:fp8'; choose from: cpu:fp32, cpu:fp64" in result.stderr
    assert list(tmp_path.glob("*.json")) == []


def test_a_crash_during_fidelity_is_a_failed_check_not_a_dead_run(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    out = tmp_path / "results"
    proc = run_bench(
        "run", "--backend", "segv-train", "--workload", "mlp", "--mode", "infer",
        "--preset", "tiny", "--fidelity", "--out", str(out), env=test_plugins,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # the infer case itself is fine
    (path,) = out.glob("*.json")
    run = load_run(path)
    assert run.status == "complete" and run.cases[0].status == "ok"
    (check,) = run.fidelity
    assert check.verdict == "fail"
    assert check.error and "crash" in check.error and "SIGSEGV" in check.error


def test_report_from_a_folder_skips_bad_files_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    save_run(record("cpu", "Xeon", label=HOSTILE), results / "a.json")
    save_run(record("npu", "Ascend", train_slowdown=5.0, offset_s=60), results / "b.json")
    (results / "broken.json").write_text("{not json")
    out = tmp_path / "report"
    result = invoke_bench(capsys, "report", str(results), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "broken.json is not valid JSON" in result.stderr
    assert "report of 2 run(s)" in result.stdout
    html = (out / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "broken.json" in (out / "report.md").read_text()  # the warning is in the notes


def test_report_of_an_explicit_corrupt_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "run_id": "x"')
    result = invoke_bench(capsys, "report", str(bad), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert _flat(f"results file {bad} is not valid JSON") in _flat(result.stderr)
    assert not (tmp_path / "r").exists()


def test_report_of_an_empty_folder_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke_bench(capsys, "report", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert _flat("no usable results in") in _flat(result.stderr)


def test_fidelity_steps_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke_bench(capsys, "run", "--workload", "mlp", "--fidelity-steps", "0")
    assert result.returncode == 2
    assert _flat("--fidelity-steps: input should be greater than or equal to 1") in _flat(
        result.stderr
    )


def test_report_into_a_folder_that_cannot_be_made_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_run(record("cpu", "Xeon"), tmp_path / "a.json")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke_bench(capsys, "report", str(tmp_path / "a.json"), "--out", str(blocker / "r"))
    assert result.returncode == 2
    assert _flat(f"cannot create the output folder {blocker / 'r'}") in _flat(result.stderr)


def test_a_hang_during_fidelity_times_out_as_a_failed_check(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    out = tmp_path / "results"
    proc = run_bench(
        "run", "--backend", "hang-train", "--workload", "mlp", "--mode", "infer",
        "--preset", "tiny", "--fidelity", "--case-timeout", "120", "--fidelity-timeout", "6",
        "--out", str(out),
        env=test_plugins,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (check,) = load_run(next(out.glob("*.json"))).fidelity
    assert check.verdict == "fail"
    assert check.error and "timeout" in check.error and "6 s" in check.error


def test_report_judges_stored_fidelity_checks_again_under_the_current_bands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.run_records import fidelity

    # stored as failed (say, under an older band); its trajectories are within today's
    stale = fidelity("mlp", "cpu", verdict="fail", drift=1e-4)
    save_run(record("cpu", "Xeon", checks=[stale]), tmp_path / "a.json")
    out = tmp_path / "report"
    result = invoke_bench(capsys, "report", str(tmp_path / "a.json"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    markdown = (out / "report.md").read_text()
    assert "deliberate fail" not in markdown
    row = next(line for line in markdown.splitlines() if "| mlp | fp32 | small |" in line)
    assert "| pass |" in row
    assert load_run(tmp_path / "a.json").fidelity[0].verdict == "fail"  # the file is untouched
