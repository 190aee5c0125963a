"""Reading results never loads torch: `bench compare`, `bench report`, `bench export` and
`harness.load_runs` read JSON only. Checked in a fresh interpreter, since pytest has already
imported torch here. `bench --help` lists every command without importing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.store import save_run
from tests.conftest import pythonpath
from tests.synthetic_runs import case, run, samples

TORCH_FREE = "torch_loaded={}"


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with the worktree first on sys.path."""
    env = {**os.environ, "PYTHONPATH": pythonpath(), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def bench_then_report_torch(*args: str) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` in a fresh interpreter, then a last stderr line saying whether torch was
    loaded."""
    code = (
        "import sys\n"
        "from harness.cli.app import main\n"
        "sys.argv = ['bench', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print('torch_loaded=' + str('torch' in sys.modules), file=sys.stderr)\n"
    )
    return python(code, *args)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("runs")
    paths = []
    for index, median in enumerate((0.010, 0.012)):
        path = folder / f"run{index}.json"
        save_run(run([case(samples(median, seed=index))], index=index), path)
        paths.append(path)
    return paths[0], paths[1]


def test_bench_compare_never_loads_torch(two_runs: tuple[Path, Path]) -> None:
    result = bench_then_report_torch("compare", str(two_runs[0]), str(two_runs[1]))
    assert result.returncode == 0, result.stderr
    assert "mlp/train/fp32/b16/tiny" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == TORCH_FREE.format(False)


def test_bench_export_never_loads_torch(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cases.csv"
    result = bench_then_report_torch(
        "export", str(two_runs[0]), "--format", "csv", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("run_id,")
    assert result.stderr.strip().splitlines()[-1] == TORCH_FREE.format(False)


def test_load_runs_never_loads_torch(two_runs: tuple[Path, Path]) -> None:
    code = (
        "import sys, harness\n"
        "frame = harness.load_runs(sys.argv[1])\n"
        "print(len(frame), 'torch' in sys.modules)\n"
    )
    result = python(code, str(two_runs[0].parent))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "False"]


def test_a_bad_results_file_is_a_user_error_without_torch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    result = bench_then_report_torch("compare", str(bad), str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "is not an accelbench results file" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == TORCH_FREE.format(False)


def test_bench_help_lists_each_command_with_its_own_help_without_importing_it() -> None:
    code = (
        "import sys\n"
        "from harness.cli.app import COMMANDS, command_help, load_command\n"
        "texts = {name: command_help(name) for name in COMMANDS}\n"
        "print('torch' in sys.modules)\n"
        "for name in COMMANDS:\n"
        "    assert texts[name] and texts[name] == (load_command(name).help or ''), name\n"
        "print('same')\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "same"]
