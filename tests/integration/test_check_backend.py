"""`bench check-backend`: the conformance kit from the command line, on the CPU, on the
example vendor plugin (when installed), on unknown and hanging backends."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from harness.results.store import load_run
from tests.conftest import invoke_bench, run_bench

needs_hostdev = pytest.mark.skipif(
    importlib.util.find_spec("accelbench_hostdev") is None,
    reason="the example plugin is not installed: pip install ./examples/vendor-plugin",
)


def test_cpu_conforms(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = tmp_path / "kit.json"
    proc = invoke_bench(capsys, "check-backend", "cpu", "--json", str(report))
    assert proc.returncode == 0, proc.stdout
    assert "backend 'cpu' conforms" in proc.stdout
    for check in ("synchronize waits for queued work", "timer vs host clock", "placement: mlp"):
        assert check in proc.stdout
    assert '"status": "fail"' not in report.read_text()


def test_unknown_backend_exits_2_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "check-backend", "nosuchdev")
    assert proc.returncode == 2
    assert "unknown backend 'nosuchdev'" in proc.stderr
    assert "cpu" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_backend_exits_2_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "check-backend", "cuda")
    assert proc.returncode == 2
    assert "backend 'cuda' is unavailable" in proc.stderr


def test_bad_timeout_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "check-backend", "cpu", "--timeout", "0")
    assert proc.returncode == 2
    assert "--timeout must be a positive number" in proc.stderr


def test_a_hanging_check_fails_the_kit_and_skips_the_rest(
    test_plugins: dict[str, str], tmp_path: Path
) -> None:
    # hang-train's prepare() hook sleeps for an hour in backward: the kit must not wait.
    report = tmp_path / "kit.json"
    proc = run_bench(
        "check-backend", "hang-train", "--timeout", "8", "--json", str(report), env=test_plugins
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "backend 'hang-train' does not conform" in " ".join(proc.stdout.split())
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    hung = results["prepare() keeps outputs"]
    assert (hung["status"], hung["reason"]) == ("fail", "did not finish within 8 s (hung)")
    after = results["dtype fp32"]
    assert (after["status"], after["reason"]) == ("skip", "not run: 'prepare() keeps outputs' hung")


@needs_hostdev
def test_example_plugin_conforms(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "check-backend", "hostdev")
    assert proc.returncode == 0, proc.stdout
    assert "backend 'hostdev' conforms" in proc.stdout


@needs_hostdev
def test_tiny_run_on_example_plugin(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # in-process for speed; the example's own tests run it through a worker process
    proc = invoke_bench(
        capsys,
        "run",
        "--backend",
        "hostdev",
        "--workload",
        "mlp",
        "--preset",
        "tiny",
        "--isolate",
        "none",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("*.json")
    record = load_run(path)
    assert record.device.backend == "hostdev"
    assert all(case.status == "ok" for case in record.cases)


def test_a_check_that_crashes_its_process_fails_alone(
    test_plugins: dict[str, str], tmp_path: Path
) -> None:
    # segv-train's prepare() hook segfaults in backward: that check fails, the kit goes on.
    report = tmp_path / "kit.json"
    proc = run_bench(
        "check-backend", "segv-train", "--timeout", "30", "--json", str(report), env=test_plugins
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = {r["name"]: r for r in json.loads(report.read_text())["results"]}
    crashed = results["prepare() keeps outputs"]
    assert crashed["status"] == "fail"
    assert "crashed the process running it" in crashed["reason"] and "SIGSEGV" in crashed["reason"]
    assert results["placement: mlp"]["status"] == "pass"


def test_bad_isolate_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "check-backend", "cpu", "--isolate", "thread")
    assert proc.returncode == 2
    assert "--isolate expects worker or none; got 'thread'" in proc.stderr
