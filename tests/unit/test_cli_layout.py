"""The CLI's import rule: a command module imports shared CLI modules, never another command."""

from __future__ import annotations

import ast
from pathlib import Path

import harness.cli

CLI_DIR = Path(harness.cli.__file__).parent


def _cli_imports(path: Path) -> set[str]:
    """The harness.cli modules `path` imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "harness.cli":
                names.update(f"harness.cli.{alias.name}" for alias in node.names)
            elif node.module.startswith("harness.cli."):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("harness.cli."))
    return names


def test_command_modules_never_import_each_other() -> None:
    offenders = {
        path.name: sorted(n for n in _cli_imports(path) if n.endswith("_cmd"))
        for path in sorted(CLI_DIR.glob("*_cmd.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_shared_cli_modules_import_no_command() -> None:
    shared = [p for p in CLI_DIR.glob("*.py") if not p.stem.endswith("_cmd") and p.stem != "app"]
    offenders = {p.name: sorted(n for n in _cli_imports(p) if n.endswith("_cmd")) for p in shared}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_run_help_groups_its_options_into_panels() -> None:
    from typer.testing import CliRunner

    from harness.cli.app import app

    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    panels = ["Cases", "Measurement", "Fidelity", "Distributed", "Scenarios", "Output"]
    positions = [result.output.find(f"─ {panel} ─") for panel in panels]
    assert -1 not in positions and positions == sorted(positions), positions
    assert result.output.find("--nproc") > result.output.find("─ Distributed ─")
