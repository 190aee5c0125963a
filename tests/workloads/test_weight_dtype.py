"""Inference cases hold their weights in the case dtype, training cases fp32 master weights
(autocast computes in the case dtype), through the harness's own build path (CaseSpec ->
BuildContext); and the moe memory estimate counts the bytes the build allocates."""

from __future__ import annotations

import pytest
import torch

from backends.registry import get_backend
from harness.results.schema import CaseKey
from harness.run.case import CaseSpec
from workloads.base import Instance
from workloads.moe import TRAIN_COPIES, copy_bytes
from workloads.registry import get_workload

MODELS = ("mlp", "convnet", "gpt", "llama", "dit", "moe")


def built(workload: str, mode: str, dtype: str) -> Instance:
    """A tiny `workload` case of `mode` in `dtype`, built as a worker builds it."""
    params = get_workload(workload).resolve_params("tiny", {})
    key = CaseKey(
        workload=workload,
        workload_version=get_workload(workload).version,
        mode=mode,
        dtype=dtype,
        batch=int(params["batch"]),
        preset="tiny",
        params={k: v for k, v in params.items() if k != "batch"},
    )
    spec = CaseSpec(backend="cpu", key=key, params=params)
    ctx = spec.build_context(get_backend("cpu"))
    return get_workload(workload).build(ctx)


def parameter_dtypes(instance: Instance) -> set[torch.dtype]:
    return {p.dtype for p in instance.model.parameters()}  # type: ignore[attr-defined]


def allocated_bytes(instance: Instance) -> int:
    """Bytes the instance's parameters hold (each shared parameter once)."""
    parameters = instance.model.parameters()  # type: ignore[attr-defined]
    return sum(p.numel() * p.element_size() for p in parameters)


@pytest.mark.parametrize("workload", MODELS)
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_inference_weights_are_in_the_case_dtype_and_training_keeps_fp32(
    workload: str, dtype: str
) -> None:
    case_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    inference = [m for m in get_workload(workload).modes if m != "train"]
    assert inference
    for mode in inference:
        instance = built(workload, mode, dtype)
        assert parameter_dtypes(instance) == {case_dtype}, mode
        instance.step(mode)()
        assert instance.nonfinite_reason() is None, mode
    trained = built(workload, "train", dtype)
    assert parameter_dtypes(trained) == {torch.float32}
    trained.step("train")()
    assert trained.nonfinite_reason() is None


def test_fp32_cases_keep_fp32_weights() -> None:
    assert parameter_dtypes(built("gpt", "infer", "fp32")) == {torch.float32}


@pytest.mark.parametrize(
    ("mode", "dtype"), [("infer", "bf16"), ("decode", "fp16"), ("train", "bf16")]
)
def test_moe_estimate_counts_the_bytes_the_build_allocates(mode: str, dtype: str) -> None:
    instance = built("moe", mode, dtype)
    params = instance.p  # type: ignore[attr-defined]
    estimate = copy_bytes(params, mode, dtype, 1)
    weights = estimate // TRAIN_COPIES if mode == "train" else estimate
    assert weights == allocated_bytes(instance)
