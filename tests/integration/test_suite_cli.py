"""The whole workload suite through the real `bench` entry point, as a user types it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.measurement.yardstick import YARDSTICKS
from harness.results.store import load_run
from tests.conftest import SuiteRun, invoke_bench


def _flat(text: str) -> str:
    """Text without whitespace: rich wraps long lines (and paths) at the console width."""
    return "".join(text.split())


SUITE = {
    "mlp": ("infer", "train"),
    "convnet": ("infer", "train"),
    "gpt": ("infer", "train", "prefill", "decode"),
    "llama": ("infer", "train", "prefill", "decode"),
    "moe": ("infer", "train", "prefill", "decode"),
    "dit": ("infer", "train", "sample"),
    "matmul": ("probe",),
    "bandwidth": ("copy", "triad"),
}


def test_list_workloads_shows_the_suite_with_modes_and_presets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = invoke_bench(capsys, "list", "workloads")
    assert result.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    for name, modes in SUITE.items():
        assert ", ".join(modes) in rows[name]
        assert "tiny, small, base" in rows[name]


def test_tiny_run_of_the_whole_suite_is_all_ok(tiny_suite_run: SuiteRun) -> None:
    result, out = tiny_suite_run
    assert result.returncode == 0, result.stdout
    (path,) = out.glob("*.json")
    record = load_run(path)
    ran = {(c.key.workload, c.key.mode) for c in record.cases}
    assert ran == {(name, mode) for name, modes in SUITE.items() for mode in modes}
    assert all(c.status == "ok" for c in record.cases)
    for result_case in record.cases:  # a reading of every yardstick before every round
        assert result_case.measurement is not None and result_case.yardstick is not None
        assert set(result_case.yardstick) == set(YARDSTICKS)
        for readings in result_case.yardstick.values():
            assert len(readings) == result_case.measurement.rounds
            assert all(0 < seconds < 1.0 for seconds in readings)
    units = {(c.key.workload, c.key.mode): c.throughput.unit for c in record.cases if c.throughput}
    assert units[("gpt", "decode")] == "tokens/s"
    assert units[("dit", "sample")] == "images/s"
    assert units[("matmul", "probe")] == "FLOP/s"
    assert units[("bandwidth", "triad")] == "bytes/s"
    by_key = {(c.key.workload, c.key.mode): c for c in record.cases}
    assert by_key[("bandwidth", "copy")].achieved_bandwidth
    assert by_key[("matmul", "probe")].achieved_flops
    assert "time_per_output_token_s" in by_key[("gpt", "decode")].extra
    moe_train = by_key[("moe", "train")].extra
    assert moe_train["params_active"] < moe_train["params_total"]
    assert "dropped_tokens" in moe_train and "dropped_fraction" in moe_train
    assert by_key[("llama", "decode")].bytes_per_step
    # the tiny matmul probe is too small to define a peak: MFU is absent, with the reason
    assert "fp32" not in record.peaks
    assert by_key[("gpt", "train")].mfu is None
    assert "no matmul probe" in (by_key[("gpt", "train")].mfu_note or "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "gpt", "--param", "n_head=3"], "must be divisible by n_head (3)"),
        (["--workload", "dit", "--param", "patch=5"], "must be divisible by patch (5)"),
        (["--workload", "gpt", "--mode", "sample"], "offer: decode, infer, prefill, train"),
    ],
)
def test_bad_workload_input_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    result = invoke_bench(capsys, "run", "--preset", "tiny", *args)
    assert result.returncode == 2
    assert message in " ".join((result.stdout + result.stderr).split())


def test_a_dtype_the_backend_lacks_gives_unsupported_cases_for_new_workloads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    out = tmp_path / "results"
    result = invoke_bench(
        capsys, "run", "--backend", "nofp16", "--workload", "gpt,matmul", "--mode",
        "decode,probe", "--dtype", "fp32,fp16", "--preset", "tiny", "--isolate", "none",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    (path,) = out.glob("*.json")
    statuses = {(c.key.workload, c.key.dtype): c for c in load_run(path).cases}
    assert {k: c.status for k, c in statuses.items()} == {
        ("gpt", "fp32"): "ok",
        ("gpt", "fp16"): "unsupported",
        ("matmul", "fp32"): "ok",
        ("matmul", "fp16"): "unsupported",
    }
    error = statuses[("gpt", "fp16")].error
    assert error and "backend 'nofp16' does not support fp16" in error.message


def test_the_default_suite_checks_fidelity_and_writes_the_report_beside_the_results(
    tiny_suite_run: SuiteRun,
) -> None:
    result, out = tiny_suite_run
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("*.json")
    run = load_run(path)
    assert run.config.fidelity is True and run.fidelity
    assert {f.workload for f in run.fidelity} <= {"gpt", "llama", "moe", "mlp", "convnet"}
    (moe,) = [f for f in run.fidelity if f.workload == "moe"]
    assert len(moe.routing_match) == moe.steps and moe.max_routing_mismatch == 0.0
    folder = out / f"{path.stem}-report"
    assert (folder / "report.html").is_file() and (folder / "report.md").is_file()
    markdown = (folder / "report.md").read_text()
    assert "Verdict" in markdown
    assert f"{run.run_id[:8]} (complete; 5 rounds, seed {run.config.round_seed}; machine " in (
        markdown
    )  # ... steady or moved: the yardsticks were read before every round
    assert _flat(f"report: {folder / 'report.html'}") in _flat(result.stdout)
