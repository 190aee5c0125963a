"""A sticky device error (illegal address, device-side assert, ACL error) poisons the worker's
device context: the worker is replaced after it, so later cases run in a clean process."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import is_sticky_device_error
from harness.results.store import load_run
from tests.conftest import run_bench


@pytest.mark.parametrize(
    "message",
    [
        "CUDA error: an illegal memory access was encountered",
        "CUDA error: device-side assert triggered",
        "CUDA error: unspecified launch failure",
        "The Inner error is reported as above. ACL stream synchronize failed, error code is 507015",
        "call aclnnMatmul failed, detail:EZ9999: Inner Error! AI Core exception",
    ],
)
def test_sticky_device_errors_are_recognised(message: str) -> None:
    assert is_sticky_device_error(RuntimeError(message))


@pytest.mark.parametrize(
    "message",
    ["CUDA out of memory. Tried to allocate 2.00 GiB", "shape mismatch", "NaN in output"],
)
def test_ordinary_errors_are_not_sticky(message: str) -> None:
    assert not is_sticky_device_error(RuntimeError(message))


def test_worker_is_replaced_after_a_sticky_device_error(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    proc = run_bench(
        "run", "--backend", "sticky-train", "--workload", "mlp", "--mode", "train,infer",
        "--preset", "tiny", "--isolate", "worker", "--case-timeout", "60", "--out", str(tmp_path),
        env=test_plugins,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("*.json")
    cases = {c.key.mode: c for c in load_run(path).cases}
    assert cases["train"].status == "failed"
    assert cases["train"].error and "illegal memory access" in cases["train"].error.message
    assert cases["infer"].status == "ok", cases["infer"].error
