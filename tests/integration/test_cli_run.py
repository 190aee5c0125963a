"""`bench run`, `bench list` end to end, as a user types them."""

import json
from pathlib import Path

import pytest

from harness.results.schema import SCHEMA_VERSION
from harness.results.store import load_run
from tests.conftest import invoke_bench, run_bench


def test_tiny_run_writes_a_valid_results_file_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run_bench(
        "run",
        "--backend",
        "cpu",
        "--workload",
        "mlp",
        "--preset",
        "tiny",
        "--label",
        "first",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "mlp/train/fp32/b16/tiny" in proc.stdout
    assert "median (95% CI)" in proc.stdout
    (path,) = out.glob("*.json")
    assert f"results: {path}" in proc.stdout.replace("\n", "")
    record = load_run(path)
    assert record.status == "complete"
    assert record.label == "first"
    assert record.environment.torch_version
    assert {c.key.mode for c in record.cases} == {"infer", "train"}
    for case in record.cases:
        assert case.status == "ok"
        assert case.measurement and case.measurement.n >= 10
        assert case.throughput and case.throughput.unit == "samples/s"
        assert case.flops_per_step and case.achieved_flops
    # round trip: load, dump, equal
    assert type(record).model_validate_json(record.model_dump_json()) == record
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 2
    # Measured in the preset's 5 rounds, the order's seed stored.
    assert record.config.rounds == 5 and record.config.round_seed is not None
    assert record.config.interleave == "run"
    for case in record.cases:
        assert case.measurement and case.measurement.rounds == 5
        assert sorted(set(case.measurement.sample_rounds)) == [0, 1, 2, 3, 4]


def test_list_backends_shows_cpu_ok_and_why_others_are_unavailable() -> None:
    proc = run_bench("list", "backends")
    assert proc.returncode == 0
    lines = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if "│" in line}
    assert "ok" in lines["cpu"]
    assert "unavailable" in lines["cuda"] and "CPU-only" in proc.stdout
    assert "unavailable" in lines["npu"] and "torch_npu is not installed" in proc.stdout


def test_list_workloads_shows_modes_and_presets() -> None:
    proc = run_bench("list", "workloads")
    assert proc.returncode == 0
    assert (
        "mlp" in proc.stdout
        and "infer, train" in proc.stdout
        and "tiny, small, base" in proc.stdout
    )


BAD_INPUT = [
    (["--backend", "quantum"], "unknown backend 'quantum'. Registered backends: cpu, cuda, npu"),
    (["--backend", "cuda"], "CPU-only"),
    (["--backend", "npu"], "torch_npu is not installed"),
    (["--backend", "npu"], "CANN"),
    (["--workload", "nope"], "unknown workload 'nope'; choose from: mlp"),
    (["--mode", "fly"], "unknown --mode 'fly'; choose from: infer, train"),
    (["--dtype", "fp8"], "unknown --dtype 'fp8'; choose from: fp32, bf16, fp16"),
    (["--preset", "huge"], "unknown --preset 'huge'; choose from: tiny, small, base"),
    (["--batch", "0"], "--batch: input should be greater than 0, got 0."),
    (["--batch", "x"], "positive integers"),
    (["--param", "nokey"], "key=value"),
    (["--isolate", "vm"], "unknown --isolate 'vm'; choose from: none, worker, case."),
    (["--interleave", "all"], "unknown --interleave 'all'; choose from: run, workload, case."),
    (["--dtype", ""], "--dtype: list should have at least 1 item"),
    (["--fidelity-steps", "0"], "--fidelity-steps: input should be greater than or equal to 1"),
    (["--requests", "50"], "--requests: scenario option(s); add --scenario to run scenarios."),
    (["--case-timeout", "-1"], "--case-timeout: input should be greater than 0, got -1.0"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    defaults = [] if "--workload" in args else ["--workload", "mlp"]
    proc = invoke_bench(capsys, "run", "--preset", "tiny", "--out", str(tmp_path), *defaults, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.json")), "no results file for rejected input"


def test_dtype_the_backend_cannot_run(
    tmp_path: Path, test_plugins: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    proc = invoke_bench(
        capsys,
        "run",
        "--backend",
        "nofp16",
        "--workload",
        "mlp",
        "--preset",
        "tiny",
        "--dtype",
        "fp16",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 2
    assert "cannot run fp16; it supports: fp32, bf16" in " ".join(proc.stderr.split())


def test_unsupported_dtype_in_a_mix_is_an_unsupported_case(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    proc = run_bench(
        "run",
        "--backend",
        "nofp16",
        "--workload",
        "mlp",
        "--mode",
        "infer",
        "--preset",
        "tiny",
        "--dtype",
        "fp32,fp16",
        "--out",
        str(tmp_path),
        env=test_plugins,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("*.json")
    cases = {c.key.dtype: c for c in load_run(path).cases}
    assert cases["fp32"].status == "ok"
    assert cases["fp16"].status == "unsupported"
    assert cases["fp16"].error and "does not support fp16" in cases["fp16"].error.message


def test_unwritable_output_folder_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = invoke_bench(
        capsys, "run", "--workload", "mlp", "--preset", "tiny", "--out", str(blocker / "x")
    )
    assert proc.returncode == 2
    assert "cannot create the output folder" in proc.stderr
