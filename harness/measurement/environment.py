"""What the machine and software looked like during a run: stored with every result."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from pathlib import Path

import torch

import harness
from backends.cpu import cpu_model_name
from harness.results.schema import EnvironmentInfo

PERFORMANCE_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "KMP_AFFINITY",
    "GOMP_CPU_AFFINITY",
    "OMP_PROC_BIND",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "NVIDIA_TF32_OVERRIDE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "TORCH_DEVICE_BACKEND_AUTOLOAD",
    "ASCEND_RT_VISIBLE_DEVICES",
    "ASCEND_LAUNCH_BLOCKING",
    "HCCL_BUFFSIZE",
    "NCCL_ALGO",
    "NCCL_PROTO",
    "LD_PRELOAD",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the accelbench checkout in use, when it is a git checkout."""
    root = start or Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # an installed copy: do not report an unrelated repo
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _turbo() -> str | None:
    no_turbo = _read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    if no_turbo is not None:
        return "off" if no_turbo == "1" else "on"
    boost = _read("/sys/devices/system/cpu/cpufreq/boost")
    if boost is not None:
        return "on" if boost == "1" else "off"
    return None


def torch_build() -> str:
    """How torch was built: "cuda X", "rocm X" or "cpu", then the CPU BLAS it was built against
    (`BLAS_INFO` in `torch.__config__.show()`, e.g. "cpu, blas mkl") when the build says."""
    if torch.version.cuda:
        build = f"cuda {torch.version.cuda}"
    elif torch.version.hip:
        build = f"rocm {torch.version.hip}"
    else:
        build = "cpu"
    blas = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return f"{build}, blas {blas.group(1)}" if blas else build


def capture_environment() -> EnvironmentInfo:
    """A snapshot of this process's machine, threads and performance-relevant settings."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return EnvironmentInfo(
        hostname=socket.gethostname(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_model=cpu_model_name(),
        logical_cores=os.cpu_count() or 1,
        affinity_cores=affinity,
        torch_version=torch.__version__,
        torch_build=torch_build(),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        accelbench_version=harness.__version__,
        git_commit=git_commit(),
        load_average=load,
        cpu_governor=_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        cpu_turbo=_turbo(),
        env_vars={k: os.environ[k] for k in PERFORMANCE_ENV_VARS if k in os.environ},
    )
