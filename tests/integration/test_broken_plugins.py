"""Plugins whose import fails (a missing native library, sys.exit at import): listed with
their error, harmless to every other command, and refused with that error when asked for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import invoke_bench, pythonpath

BROKEN = Path(__file__).resolve().parent.parent / "fixtures" / "broken_plugins"
LIB_ERROR = "libvendorrt.so: cannot open shared object file"


@pytest.fixture
def broken_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installs the test plugins whose import fails, for this test and its workers."""
    monkeypatch.syspath_prepend(str(BROKEN))
    monkeypatch.setenv("PYTHONPATH", pythonpath(BROKEN))
    yield


def _flat(text: str) -> str:
    """Table text with cell borders and line wraps removed."""
    return " ".join(text.replace("│", " ").split())


def test_list_backends_shows_each_import_error(
    broken_plugins: None, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = invoke_bench(capsys, "list", "backends")
    assert proc.returncode == 0, proc.stderr
    text = _flat(proc.stdout)
    assert "brokendev" in text and "ImportError: libvendorrt.so" in text
    assert "exitdev" in text and "SystemExit: accelbench_exiting_plugin refuses to load" in text
    assert "cpu ok" in text


def test_list_workloads_survives_a_plugin_that_exits(
    broken_plugins: None, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = invoke_bench(capsys, "list", "workloads")
    assert proc.returncode == 0, proc.stderr
    text = _flat(proc.stdout)
    assert "mlp" in text
    assert "exiting" in text and "SystemExit" in text


def test_asking_for_a_broken_backend_exits_2_with_its_error(
    broken_plugins: None, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = invoke_bench(capsys, "run", "--backend", "brokendev", "--preset", "tiny")
    assert proc.returncode == 2
    assert "backend plugin 'brokendev'" in proc.stderr
    assert LIB_ERROR in _flat(proc.stderr)

    proc = invoke_bench(capsys, "run", "--backend", "exitdev", "--preset", "tiny")
    assert proc.returncode == 2
    assert "SystemExit: accelbench_exiting_plugin refuses to load" in _flat(proc.stderr)

    proc = invoke_bench(capsys, "check-backend", "brokendev")
    assert proc.returncode == 2
    assert LIB_ERROR in _flat(proc.stderr)


def test_asking_for_a_broken_workload_exits_2_with_its_error(
    broken_plugins: None, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = invoke_bench(capsys, "run", "--workload", "exiting", "--preset", "tiny")
    assert proc.returncode == 2
    assert "workload plugin 'exiting'" in proc.stderr
    assert "SystemExit" in proc.stderr


def test_other_backends_run_as_usual(
    broken_plugins: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # default isolation: the case runs in a worker process, which loads the plugins too
    proc = invoke_bench(
        capsys,
        "run",
        "--workload",
        "mlp",
        "--mode",
        "infer",
        "--preset",
        "tiny",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list(tmp_path.glob("*.json"))) == 1
