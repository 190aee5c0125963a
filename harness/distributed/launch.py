"""Building the torchrun command line (RunConfig checks the distributed options).

The launcher is torch's own (`python -m torch.distributed.run`, i.e. torchrun): a single
node uses `--standalone` (a local rendezvous on a free port, so concurrent runs never
collide); multi-node passes `--nnodes`, `--node-rank` and `--rdzv-endpoint` through with
torchrun's static rendezvous, which makes node 0 hold global rank 0 (the rank that writes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backends.base import Backend
from harness.errors import BenchError
from harness.run.session import BackendFacts

WORKER_MODULE = "harness.distributed.worker"


DISTRIBUTED_EXTRA_SUITE: tuple[str, ...] = ("allreduce",)
"""Added to the default suite when a run is distributed (they need >= 2 processes)."""


def distributed_workloads(workloads: list[str], default: list[str]) -> list[str]:
    """The workloads of a distributed run: those named, else the default suite plus the
    collectives probe."""
    return workloads or [*default, *DISTRIBUTED_EXTRA_SUITE]


def check_devices(backend: Backend | BackendFacts, nproc: int) -> None:
    """Refuse more processes per node than the backend has devices (accelerators only: CPU
    ranks share the host)."""
    if backend.device_type == "cpu":
        return
    count = backend.describe().count
    if nproc > count:
        raise BenchError(
            f"--nproc {nproc} needs {nproc} {backend.name} devices per node; this node has {count}."
        )


def threads_per_rank(max_local_nproc: int) -> int:
    """OMP_NUM_THREADS for every rank: the user's if set, else the cores shared evenly by
    the most processes this node runs (the same at every --scaling step, for a fair ratio)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max_local_nproc)


def torchrun_command(
    folder: Path, nproc: int, nnodes: int, node_rank: int, rdzv_endpoint: str | None
) -> list[str]:
    """`python -m torch.distributed.run ... -m harness.distributed.worker FOLDER`."""
    command = [sys.executable, "-m", "torch.distributed.run"]
    if rdzv_endpoint is None:
        command += ["--standalone"]
    else:
        command += [
            "--nnodes",
            str(nnodes),
            "--node-rank",
            str(node_rank),
            "--rdzv-endpoint",
            rdzv_endpoint,
        ]
    command += [
        "--nproc-per-node",
        str(nproc),
        "--max-restarts",
        "0",
        "--monitor-interval",
        "0.1",
        "-m",
        WORKER_MODULE,
        str(folder),
    ]
    return command
