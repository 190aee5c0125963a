"""Building workload instances on the CPU backend for tests."""

from __future__ import annotations

from backends.registry import get_backend
from workloads.base import BuildContext, Instance
from workloads.registry import get_workload


def build(
    name: str, dtype: str = "fp32", preset: str = "tiny", **overrides: str
) -> tuple[Instance, dict[str, object]]:
    """A built instance of workload `name` on the CPU with its resolved parameters."""
    workload = get_workload(name)
    params = workload.resolve_params(preset, overrides)
    ctx = BuildContext(
        backend=get_backend("cpu"),
        dtype_name=dtype,
        batch_size=int(params["batch"]),
        preset=preset,
        params=params,
    )
    return workload.build(ctx), params
