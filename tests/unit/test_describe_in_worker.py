"""The parent of a run never starts an accelerator backend (which would hold a device context
beside the workers'): it is described from a worker process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from backends.cpu import CPUBackend
from backends.registry import BackendError
from harness.run.session import BackendFacts, describe_backend


def test_an_accelerator_is_described_in_a_worker(
    test_plugins: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "pids.log"
    monkeypatch.setenv("ACCELBENCH_PID_LOG", str(log))
    facts = describe_backend("pid-recording")
    assert isinstance(facts, BackendFacts)
    started_in = [int(line) for line in log.read_text().split()]
    assert started_in and os.getpid() not in started_in
    assert facts.name == "pid-recording" and facts.device_type == "fakeaccel"
    assert facts.describe().backend == "pid-recording" or facts.describe().name
    assert facts.supports(torch.float32) and facts.settings() == facts.info.settings


def test_the_host_is_described_in_process() -> None:
    assert isinstance(describe_backend("cpu"), CPUBackend)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_accelerator_says_why_without_a_worker() -> None:
    with pytest.raises(BackendError, match="backend 'cuda' is unavailable"):
        describe_backend("cuda")
