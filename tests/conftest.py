"""Shared fixtures: running the real `bench` CLI, and test-only plugins on real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "fixtures" / "plugins"

OWN_INTERPRETER = os.environ.get("ACCELBENCH_ASCEND_STANDIN") == "1"
collect_ignore = [] if OWN_INTERPRETER else ["unit/test_ascend.py"]
"""test_ascend.py changes torch process-wide: test_ascend_isolated.py runs it in its own
interpreter (with that variable set) instead of collecting it here."""


def pythonpath(*extra: Path) -> str:
    parts = [str(p) for p in extra] + [str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def run_bench(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `bench ARGS...` as a user would (a new process) and capture its output."""
    full_env = {**os.environ, "PYTHONPATH": pythonpath(), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Invocation(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def invoke_bench(capsys: pytest.CaptureFixture[str], *args: str) -> Invocation:
    """Run `bench ARGS...` in this process through the real entry point (fast: torch is
    already imported), returning its exit code and captured output."""
    from harness.cli.app import main

    capsys.readouterr()
    old_argv = sys.argv
    sys.argv = ["bench", *args]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
    out, err = capsys.readouterr()
    return Invocation(code, out, err)


class SuiteRun(NamedTuple):
    result: Invocation
    out: Path
    """The folder the run wrote its results file and report into."""


@pytest.fixture(scope="session")
def tiny_suite_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    """One `bench run --backend cpu --preset tiny` of the default suite, fidelity and report
    included, as a user types it: the longest run of the tests, so the tests that check what
    it wrote share it."""
    out = tmp_path_factory.mktemp("tiny-suite") / "results"
    proc = run_bench(
        "run", "--backend", "cpu", "--preset", "tiny", "--isolate", "none", "--out", str(out),
        timeout=900,
    )  # fmt: skip
    return SuiteRun(Invocation(proc.returncode, proc.stdout, proc.stderr), out)


@pytest.fixture
def test_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Installs the misbehaving test plugins (tests/fixtures/plugins) for this test only:
    on sys.path for in-process code, on PYTHONPATH for `bench` subprocesses and workers."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    env = {"PYTHONPATH": pythonpath(PLUGINS)}
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    yield env
