"""The example plugin, installed: bench finds it, the conformance kit passes, a tiny run works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from accelbench_hostdev import HostDevBackend

from backends.registry import get_backend_class, list_backends
from harness.conformance import run_kit


def test_entry_point_registers_hostdev() -> None:
    assert get_backend_class("hostdev") is HostDevBackend
    (entry,) = [e for e in list_backends() if e.name == "hostdev"]
    assert entry.availability.ok
    assert entry.source == "plugin accelbench-hostdev"


def test_conformance_kit_passes() -> None:
    report = run_kit("hostdev", timeout_s=120)
    failed = [f"{r.name}: {r.reason}" for r in report.results if r.status == "fail"]
    assert report.passed, failed


def test_tiny_run_records_the_device(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--backend",
            "hostdev",
            "--workload",
            "mlp",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["device"]["backend"] == "hostdev"
    assert record["device"]["runtime"]["hostdev"] == "0.1.0"
    assert record["device"]["settings"]["hostdev.threads"].isdigit()  # the vendor's own setting
