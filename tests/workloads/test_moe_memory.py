"""moe refuses, before allocating, a case whose weights (or, for train, weights, gradients and
AdamW state) cannot fit the device, naming the --nproc with expert parallelism that would;
and it makes one expert-parallel process group per process, however many builds."""

from __future__ import annotations

from typing import Any

import pytest
import torch.distributed as dist

from workloads.base import BuildContext, CaseUnsupported
from workloads.moe import MoEWorkload, build_moe, memory_refusal, shard_experts

WIDE = {"d_expert": "512"}
"""moe tiny with wide experts: the experts dominate its parameters (about 1.7 MB in fp32)."""


def context(backend: Any, overrides: dict[str, str]) -> BuildContext:
    workload = MoEWorkload()
    params = workload.resolve_params("tiny", overrides)
    return BuildContext.seeded(
        backend, dtype_name="fp32", batch_size=2, preset="tiny", params=params
    )


def test_train_that_cannot_fit_is_refused_naming_nproc(test_plugins: dict[str, str]) -> None:
    from accelbench_accel_plugins import SmallMemoryBackend

    ctx = context(SmallMemoryBackend(), WIDE)
    instance = MoEWorkload().build(ctx)
    instance.step("infer")()  # the fp32 weights fit in 4 MiB
    with pytest.raises(CaseUnsupported) as refused:
        instance.step("train")
    message = str(refused.value)
    assert message.startswith("moe train needs at least")
    assert "16 bytes per parameter" in message and "the device has 4.0 MiB" in message
    nproc = int(message.split("run with --nproc ")[1].split()[0])
    assert nproc > 1 and memory_refusal(ctx.params, "train", 4 * 2**20, nproc) is None


def test_weights_that_cannot_fit_are_refused_before_building(
    test_plugins: dict[str, str],
) -> None:
    from accelbench_accel_plugins import SmallMemoryBackend

    with pytest.raises(CaseUnsupported, match=r"moe infer needs at least .* --nproc"):
        MoEWorkload().build(context(SmallMemoryBackend(), {**WIDE, "d_expert": "2048"}))


def test_base_preset_training_on_one_80_gib_device_is_refused() -> None:
    base = MoEWorkload.presets["base"]
    assert memory_refusal(base, "infer", 80 * 2**30, 1) is None
    reason = memory_refusal(base, "train", 80 * 2**30, 1)
    assert reason is not None and "15.67B parameters" in reason and "--nproc 8" in reason
    assert memory_refusal(base, "train", 80 * 2**30, 8) is None


def test_one_expert_group_per_process() -> None:
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        params = MoEWorkload().resolve_params("tiny", {})
        created: list[Any] = []
        real_new_group = dist.new_group

        def counting_new_group(*args: Any, **kwargs: Any) -> Any:
            created.append(None)
            return real_new_group(*args, **kwargs)

        dist.new_group = counting_new_group  # type: ignore[assignment]
        try:
            for _ in range(3):
                shard_experts(build_moe(params), 1)
        finally:
            dist.new_group = real_new_group  # type: ignore[assignment]
        assert len(created) == 1
    finally:
        dist.destroy_process_group()
