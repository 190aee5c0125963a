"""One converge case run in this process (no CLI, no worker): the helper the converge tests
share. The reference of a workload's seeds is trained once per process and reused."""

from __future__ import annotations

from harness.convergence.job import ConvergeSpec, run_converge_case
from harness.convergence.settings import converge_settings
from harness.results.schema import CaseKey, Convergence
from workloads.registry import get_workload


def case_key(workload: str, dtype: str = "fp32") -> tuple[CaseKey, dict[str, object]]:
    """The key of a tiny converge case of `workload` in `dtype`, and the workload's params."""
    built = get_workload(workload)
    params = built.resolve_params("tiny", {})
    key = CaseKey(
        workload=workload,
        workload_version=built.version,
        mode="converge",
        dtype=dtype,
        batch=params["batch"],
        preset="tiny",
        params={k: v for k, v in params.items() if k != "batch"},
    )
    return key, params


def converge(
    backend: str,
    dtype: str = "fp32",
    seeds: int = 1,
    workload: str = "mlp",
    target_step: int = 60,
    **settings: object,
) -> Convergence:
    """The Convergence of `workload` at the tiny preset on `backend` (asserting the case ran);
    `settings` override ConvergeSettings fields (eval_batches, soak_s, ...)."""
    key, params = case_key(workload, dtype)
    config = converge_settings("tiny", seeds=seeds, target_step=target_step)
    spec = ConvergeSpec(
        backend=backend, key=key, params=params, settings=config.model_copy(update=settings)
    )
    case = run_converge_case(spec)
    assert case.status == "ok", case.error
    assert case.convergence is not None
    return case.convergence
