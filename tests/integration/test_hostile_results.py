"""A crafted results file is data, never code: every command that reads results treats the
names in it (backend, workload, labels) as text, imports nothing they name, and escapes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.store import save_run
from tests.conftest import pythonpath, run_bench
from tests.run_records import record

TRAP_MODULE = "accelbench_trap_module"
HOSTILE = r"<script>alert(1)</script> __import__('os').system('touch pwned') | **x** $x$ $\frac$"


@pytest.fixture
def trap(tmp_path: Path) -> tuple[Path, Path]:
    """A module that leaves a sentinel file behind if anything imports it, on PYTHONPATH."""
    folder = tmp_path / "trap"
    folder.mkdir()
    sentinel = tmp_path / "IMPORTED"
    (folder / f"{TRAP_MODULE}.py").write_text(
        f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('imported')\n"
    )
    return folder, sentinel


def hostile_run(path: Path) -> Path:
    run = record(f"{TRAP_MODULE}:Backend", "Xeon")
    run.label = HOSTILE
    run.device.name = f"{TRAP_MODULE} {HOSTILE}"
    for case in run.cases[:2]:
        case.key = case.key.model_copy(update={"workload": f"{TRAP_MODULE}.evil {HOSTILE}"})
    save_run(run, path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "{run}", "{run}"],
        ["report", "{run}", "--out", "{out}"],
        ["plot", "{run}", "--out", "{out}"],
        ["export", "{run}", "--format", "csv", "--out", "{out}/x.csv"],
        ["export", "{run}", "--format", "pytest-benchmark", "--out", "{out}/x.json"],
    ],
    ids=lambda c: " ".join(c[:3:2]) if c[0] == "export" else c[0],
)
def test_names_in_a_results_file_are_never_imported(
    command: list[str], trap: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, sentinel = trap
    run = hostile_run(tmp_path / "hostile.json")
    args = [a.format(run=run, out=tmp_path / "out") for a in command]
    proc = run_bench(*args, env={"PYTHONPATH": pythonpath(folder)}, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not sentinel.exists(), f"`bench {command[0]}` imported a module named in a results file"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    html = tmp_path / "out" / "report.html"
    if html.exists():
        text = html.read_text(encoding="utf-8")
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
