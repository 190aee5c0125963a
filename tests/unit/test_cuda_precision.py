"""cuda_fp32_downcasts() survives torch's newer fp32_precision API (torch then refuses the
legacy questions) and reads the new API's state. The API switch is process-wide and cannot be
undone, so each check runs in its own interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def downcasts_after(setup: str) -> list[str]:
    code = (
        "import json, torch\n"
        f"{setup}\n"
        "from backends.cuda import cuda_fp32_downcasts, cuda_settings\n"
        "cuda_settings()\n"
        "print(json.dumps(cuda_fp32_downcasts()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_new_api_matmul_tf32_is_read_not_raised() -> None:
    found = downcasts_after(
        "torch.backends.cuda.matmul.fp32_precision = 'tf32'\n"
        "torch.backends.cudnn.conv.fp32_precision = 'ieee'\n"
        "torch.backends.cudnn.rnn.fp32_precision = 'ieee'"
    )
    assert "torch.backends.cuda.matmul.fp32_precision=tf32" in found
    assert not any("cudnn" in item for item in found)


def test_new_api_ieee_everywhere_reports_no_downcast() -> None:
    found = downcasts_after(
        "torch.backends.cuda.matmul.fp32_precision = 'ieee'\n"
        "torch.backends.cudnn.conv.fp32_precision = 'ieee'\n"
        "torch.backends.cudnn.rnn.fp32_precision = 'ieee'"
    )
    assert found == []
