"""Runs tests/unit/test_ascend.py in a fresh interpreter: its stand-in torch_npu renames torch's
PrivateUse1 device process-wide, which must not leak into the rest of the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, pythonpath
from tests.unit.test_ascend import OWN_INTERPRETER


def test_ascend_backend_on_the_stand_in_torch_npu_in_its_own_interpreter() -> None:
    module = Path(__file__).with_name("test_ascend.py")
    env = {**os.environ, "PYTHONPATH": pythonpath(), OWN_INTERPRETER: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(module)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-3000:]
