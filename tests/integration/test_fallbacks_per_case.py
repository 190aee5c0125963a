"""A runtime that warns of a host fallback once per operator per process (torch_npu): each
case runs first in a fresh worker, so every case that falls back records it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.store import load_run
from tests.conftest import run_bench


@pytest.mark.parametrize(
    ("backend", "recorded"),
    [("fallback-once", [True, True]), ("fallback-once-undeclared", [True, False])],
)
def test_each_case_records_a_fallback_warned_once_per_process(
    tmp_path: Path, test_plugins: dict[str, str], backend: str, recorded: list[bool]
) -> None:
    proc = run_bench(
        "run", "--backend", backend, "--workload", "mlp", "--mode", "train", "--batch", "4,8",
        "--preset", "tiny", "--rounds", "2", "--interleave", "run", "--out", str(tmp_path),
        env=test_plugins,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = load_run(next(tmp_path.glob("*.json"))).cases
    assert [c.key.batch for c in cases] == [4, 8]
    assert all(c.status == "ok" for c in cases)
    # Undeclared, both cases share one worker: only the first to run hears of the operator
    # (the round order is random, so the first of the two by batch need not be it).
    found = [c.host_fallbacks == ["aten::fake_backward_op"] for c in cases]
    assert sorted(found, reverse=True) == recorded, [c.host_fallbacks for c in cases]
