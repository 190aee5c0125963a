"""`bench check-backend NAME --deep`: the device acceptance table runs on the CPU backend, its
device-only lines say "skipped: no device", and each line shows the figure behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.conformance.deep import NO_DEVICE, plan_deep_checks
from tests.conftest import invoke_bench

DEVICE_ONLY = (
    "timing vs one event pair: tiny kernel",
    "timing vs one event pair: 8192 bf16 GEMM",
    "yardsticks are device-bound",
    "MFU of an 8192 bf16 GEMM vs sourced peak",
    "profiler ranks device time",
    "energy reading plausible",
    "base-preset gpt run completes",
)


def test_acceptance_table_on_the_cpu(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report_path = tmp_path / "deep.json"
    proc = invoke_bench(capsys, "check-backend", "cpu", "--deep", "--json", str(report_path))
    assert proc.returncode == 0, proc.stdout
    assert "device acceptance of backend 'cpu'" in proc.stdout
    assert "backend 'cpu' passes its acceptance run" in proc.stdout
    results = {r["name"]: r for r in json.loads(report_path.read_text())["results"]}
    assert list(results) == [line.name for line in plan_deep_checks()]
    for name in DEVICE_ONLY:
        assert results[name]["status"] == "skip" and results[name]["reason"] == NO_DEVICE
    suite = results["small suite in fp32/bf16/fp16 completes"]
    assert suite["status"] == "pass" and suite["reason"].startswith("3 ok")
    assert results["settings recorded"]["status"] == "pass"
    moe = results["moe base memory refusal is a clear reason"]
    assert moe["status"] == "pass"
    assert "needs at least" in moe["reason"] or "no refusal needed" in moe["reason"]


def test_deep_on_an_unknown_backend_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "check-backend", "nosuchdev", "--deep")
    assert proc.returncode == 2
    assert "unknown backend 'nosuchdev'" in proc.stderr
