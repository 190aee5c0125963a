"""The import contracts, checked by import-linter (`[tool.importlinter]` in pyproject.toml): an
execution stack and a presentation stack over `results`, independent of each other; reading
results never imports torch; no import cycles anywhere in the tree. Each contract is shown to
catch a violation planted in a copy of the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("harness", "backends", "workloads")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under `root`, with the project's contracts."""
    script = (
        "import sys; sys.path.insert(0, '.'); "
        "from importlinter.cli import lint_imports_command; lint_imports_command()"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_the_layering_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_a_planted_cycle_between_sibling_modules_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.results.schema", "import harness.results.store  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "No cycles are allowed in harness.results" in result.stdout
    assert ".schema -> .store" in result.stdout or ".store -> .schema" in result.stdout


def test_a_planted_cycle_across_packages_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.run.session", "import harness.run.runner  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "No cycles are allowed in harness.run" in result.stdout


def broken(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The names of the contracts a lint-imports run reports broken."""
    return [
        line.split(" BROKEN")[0].strip() for line in result.stdout.splitlines() if " BROKEN" in line
    ]


def test_an_upward_import_in_the_execution_stack_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "workloads.matmul", "import harness.measurement.timing  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert broken(result) == ["Execution stack: imports point down"]
    assert "workloads.matmul -> harness.measurement.timing" in result.stdout


def test_an_upward_import_in_the_presentation_stack_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.analysis.phases", "import harness.report.render  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "Presentation stack: imports point down" in broken(result)  # and a cycle
    assert "harness.analysis.phases -> harness.report.render" in result.stdout


def test_execution_importing_presentation_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.fidelity.drift", "import harness.report.render  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert broken(result) == ["Execution never imports presentation"]
    assert "harness.fidelity.drift -> harness.report.render" in result.stdout


def test_presentation_importing_execution_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.report.render", "import harness.isolation.executor  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "Presentation never imports execution" in broken(result)
    assert "harness.report.render -> harness.isolation.executor" in result.stdout


def test_results_importing_torch_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.results.frame", "import torch  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert broken(result) == ["Reading results never imports torch"]
    assert "harness.results.frame -> torch" in result.stdout


def test_the_compare_command_reaching_torch_through_a_backend_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "harness.cli.compare_cmd", "import backends.base  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert broken(result) == ["Reading results never imports torch"]
    assert "harness.cli.compare_cmd -> backends.base" in result.stdout


def test_a_dispatcher_above_both_stacks_may_import_both(tree_copy: Path) -> None:
    (tree_copy / "harness" / "dispatch.py").write_text(
        "import harness.report.build\nimport harness.run.runner\n"
    )
    plant(tree_copy, "harness.cli.run_cmd", "import harness.dispatch  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout
    assert "6 kept, 0 broken" in result.stdout
