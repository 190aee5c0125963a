"""A saved results file has the umask's mode, like the reports beside it, not the temporary
file's private 0600: a shared results folder stays readable to the team."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.results.store import claim_run_path, save_run
from tests.unit.test_store import make_record


@pytest.fixture
def umask_022() -> Iterator[None]:
    saved = os.umask(0o022)
    yield
    os.umask(saved)


@pytest.mark.usefixtures("umask_022")
def test_saved_results_file_is_readable_by_others(tmp_path: Path) -> None:
    record = make_record()
    path = claim_run_path(tmp_path, record)
    save_run(record, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    save_run(record, path)  # replaced in place: still the umask's mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
