"""The layering contract of DESIGN.md, checked by import-linter (`[tool.importlinter]` in
pyproject.toml): imports point down the layers, and no import cycles anywhere in the tree."""

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
    assert "2 kept, 0 broken" in result.stdout


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


def test_an_upward_import_breaks_it(tree_copy: Path) -> None:
    plant(tree_copy, "workloads.matmul", "import harness.measurement.timing  # planted")
    result = lint_imports(tree_copy)
    assert result.returncode == 1
    assert "workloads.matmul -> harness.measurement.timing" in result.stdout
