"""Faults injected around runs: concurrent runs, hostile text, misbehaving plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import backends.registry
from harness.results.store import load_run, save_run
from tests.conftest import ROOT, invoke_bench, pythonpath
from tests.run_records import record


def test_two_runs_at_once_into_one_folder_write_two_valid_files(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    argv = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--workload",
        "mlp",
        "--preset",
        "tiny",
        "--isolate",
        "none",
        "--out",
        str(tmp_path),
    ]
    procs = [
        subprocess.Popen(
            [*argv, "--label", f"run {i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    records = [load_run(p) for p in sorted(tmp_path.glob("*.json"))]
    assert sorted(r.label for r in records) == ["run 0", "run 1"]
    assert all(r.status == "complete" and len(r.cases) == 2 for r in records)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_long_and_non_ascii_labels_round_trip_and_never_become_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label = "../../x " + "ünïcødé 训练 推理 🚀 " * 500
    out = tmp_path / "out"
    proc = invoke_bench(
        capsys,
        "run",
        "--workload",
        "mlp",
        "--mode",
        "infer",
        "--preset",
        "tiny",
        "--isolate",
        "none",
        "--label",
        label,
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("*.json")
    assert path.parent == out
    assert load_run(path).label == label
    assert not (tmp_path / "x").exists()


def test_plugin_raising_in_availability_is_listed_with_its_error(
    test_plugins: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends.registry, "AVAILABILITY_TIMEOUT_S", 1.0)
    proc = invoke_bench(capsys, "list", "backends")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "availability() raised RuntimeError: driver query exploded" in text
    assert "availability() did not answer within 1 s" in text
    assert "cpu" in text

    proc = invoke_bench(capsys, "run", "--backend", "raising-availability", "--preset", "tiny")
    assert proc.returncode == 2
    assert "driver query exploded" in proc.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["plot", "{run}", "--out", "{blocked}/plots"],
        ["plot", "{run}", "--history", "--out", "{blocked}/plots"],
        ["export", "{run}", "--format", "csv", "--out", "{blocked}/x.csv"],
        ["report", "{run}", "--out", "{blocked}/report"],
        ["check-backend", "cpu", "--json", "{blocked}/kit.json"],
    ],
    ids=lambda c: " ".join(c[:1] + [a for a in c if a.startswith("--h")]),
)
def test_an_output_path_that_cannot_be_made_exits_2(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run.json"
    save_run(record("cpu", "Xeon"), run)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    args = [a.format(run=run, blocked=blocked) for a in command]
    proc = invoke_bench(capsys, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot create the output folder" in proc.stderr
    assert "Traceback" not in proc.stderr
