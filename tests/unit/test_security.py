"""Security guarantees: nothing read from results or config files is ever executed.

The package's own source is scanned for the constructs that could execute data (eval, exec,
pickle and friends, torch.load, dynamic imports of names not written in the code). A new use
of any of them fails this test and must be reviewed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("harness", "backends", "workloads")

FORBIDDEN_CALLS = {"eval", "exec", "__import__", "compile"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
FORBIDDEN_ATTRIBUTES = {
    ("torch", "load"): "torch.load unpickles",
    ("yaml", "load"): "yaml.load can construct objects",
    ("pd", "read_pickle"): "read_pickle unpickles",
    ("pandas", "read_pickle"): "read_pickle unpickles",
}
IMPORT_MODULE_SITES = {
    # file -> why its dynamic import cannot take a name from data
    "harness/__init__.py": "lazy public names from the in-code _LAZY table",
    "backends/__init__.py": "lazy public names from the in-code _LAZY table",
    "workloads/__init__.py": "lazy public names from the in-code _LAZY table",
    "harness/cli/app.py": "command modules from the in-code COMMANDS table",
    "backends/ascend.py": "the constants 'torch_npu' and 'torch_npu.profiler'",
    "workloads/data.py": "the in-code tuple of stdlib corpus modules",
}


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(ROOT).as_posix()
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [
                f"{where} imports {a.name}"
                for a in node.names
                if a.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{where} calls {func.id}()")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                reason = FORBIDDEN_ATTRIBUTES.get((func.value.id, func.attr))
                if reason:
                    found.append(f"{where} calls {func.value.id}.{func.attr}: {reason}")
                if func.attr == "import_module" and rel not in IMPORT_MODULE_SITES:
                    found.append(f"{where} imports a module by a computed name")
    return found


def test_the_scan_sees_the_whole_package() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert {"harness/results/store.py", "backends/registry.py", "workloads/registry.py"} <= files
    assert set(IMPORT_MODULE_SITES) <= files, "a reviewed import site no longer exists"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_construct_that_could_execute_data(path: Path) -> None:
    assert _violations(path) == []


def test_the_scan_catches_each_forbidden_construct(tmp_path: Path) -> None:
    bad = ROOT / "harness" / "_scan_probe_never_committed.py"
    bad.write_text(
        "import pickle\nfrom marshal import loads\nimport importlib\nimport torch\n"
        "eval('1')\nexec('x=1')\ntorch.load('f')\nimportlib.import_module(name)\n"
    )
    try:
        found = _violations(bad)
    finally:
        bad.unlink()
    assert len(found) == 6, found
