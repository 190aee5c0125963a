"""Pieces of the distributed harness that run in one process: bus factors, sizes, scaling,
the torchrun command, fault specs, and the DDP hook on a one-rank gloo group."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from backends.cpu import CPUBackend
from harness.distributed.context import DistributedBuildContext
from harness.distributed.job import parse_faults
from harness.distributed.launch import distributed_workloads, torchrun_command
from harness.distributed.measure import measure_synchronized
from harness.distributed.scaling import apply_scaling_efficiency, scaling_ladder
from harness.results.config import MeasureSettings, RunConfig
from harness.results.schema import CaseKey, CaseResult, Throughput
from harness.run.plan import plan_cases
from workloads.allreduce import AllReduceWorkload, bus_factor, message_sizes
from workloads.base import CaseUnsupported
from workloads.mlp import MLPWorkload


@pytest.mark.parametrize(
    ("op", "world", "factor"),
    [
        ("all_reduce", 2, 1.0),
        ("all_reduce", 8, 1.75),
        ("all_gather", 4, 0.75),
        ("reduce_scatter", 8, 0.875),
        ("broadcast", 8, 1.0),
        ("all_to_all", 2, 0.5),
        ("all_to_all", 8, 0.875),
    ],
)
def test_bus_factors_follow_nccl_tests(op: str, world: int, factor: float) -> None:
    assert bus_factor(op, world) == pytest.approx(factor)


def test_message_sizes_run_from_min_to_max() -> None:
    assert message_sizes(1024, 65536, 4) == [1024, 4096, 16384, 65536]
    assert message_sizes(1024, 3000, 2) == [1024, 2048]
    assert message_sizes(1024, 1024, 2) == [1024]


def test_scaling_ladder_doubles_then_ends_at_nproc() -> None:
    assert scaling_ladder(2) == [1, 2]
    assert scaling_ladder(6) == [1, 2, 4, 6]
    assert scaling_ladder(8) == [1, 2, 4, 8]


def _case(nproc: int, value: float, batch: int = 16) -> CaseResult:
    key = CaseKey(
        workload="mlp",
        workload_version="1",
        mode="train",
        dtype="fp32",
        batch=batch,
        preset="tiny",
        nproc=nproc,
    )
    return CaseResult(key=key, status="ok", throughput=Throughput(value=value, unit="samples/s"))


def test_scaling_efficiency_is_per_process_throughput_over_the_smallest_world() -> None:
    cases = [_case(1, 100.0), _case(2, 150.0), _case(4, 400.0), _case(2, 10.0, batch=8)]
    apply_scaling_efficiency(cases)
    assert [c.scaling_efficiency for c in cases] == [1.0, 0.75, 1.0, None]


def test_torchrun_command_is_standalone_on_one_node_and_passes_multi_node_options() -> None:
    single = torchrun_command(Path("/j"), 2, 1, 0, None)
    assert single[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in single
    assert single[-3:] == ["-m", "harness.distributed.worker", "/j"]
    multi = torchrun_command(Path("/j"), 4, 2, 1, "node0:29500")
    assert "--standalone" not in multi
    for flag, value in (("--nnodes", "2"), ("--node-rank", "1"), ("--nproc-per-node", "4")):
        assert multi[multi.index(flag) + 1] == value
    assert multi[multi.index("--rdzv-endpoint") + 1] == "node0:29500"
    assert multi[multi.index("--max-restarts") + 1] == "0"


def test_fault_spec_parses_and_rejects_bad_text() -> None:
    assert parse_faults("1:0:exit, 0:2:hang") == [(1, 0, "exit"), (0, 2, "hang")]
    with pytest.raises(ValueError, match=re.escape("RANK:CASE:exit|kill|hang")):
        parse_faults("1:0:explode")


def test_allreduce_stays_out_of_the_default_suite_but_joins_distributed_runs() -> None:
    names = {spec.key.workload for spec in plan_cases(RunConfig(preset="tiny"))}
    assert "allreduce" not in names and "mlp" in names
    assert distributed_workloads([], ["mlp"]) == ["mlp", "allreduce"]
    assert distributed_workloads(["mlp"], ["mlp", "gpt"]) == ["mlp"]


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _ctx(workload: str, params: dict[str, object]) -> DistributedBuildContext:
    return DistributedBuildContext(
        backend=CPUBackend(), dtype_name="fp32", batch_size=4, preset="tiny", params=params
    )


@pytest.mark.usefixtures("one_rank_group")
def test_the_training_hook_runs_any_workload_through_ddp() -> None:
    workload = MLPWorkload()
    ctx = _ctx("mlp", workload.resolve_params("tiny", {}))
    instance = workload.build(ctx)
    model = instance.model  # type: ignore[attr-defined]
    wrapped = ctx.for_training(model)
    assert isinstance(wrapped, DistributedDataParallel) and wrapped.module is model
    assert ctx.for_training(model) is wrapped  # one wrapper per module
    settings = MeasureSettings(warmup_s=0.0, min_samples=3, max_samples=3, max_time_s=0.1)
    samples = measure_synchronized(instance.step("train"), ctx.backend, None, settings)
    assert len(samples.step_samples_s) == len(samples.local_samples_s) == 3
    assert samples.step_samples_s == samples.local_samples_s  # max over one rank
    assert instance.nonfinite_reason() is None and torch.isfinite(instance.last).all()  # type: ignore[arg-type]


@pytest.mark.usefixtures("one_rank_group")
def test_collectives_need_two_ranks() -> None:
    workload = AllReduceWorkload()
    with pytest.raises(CaseUnsupported, match="needs --nproc >= 2"):
        workload.build(_ctx("allreduce", workload.resolve_params("tiny", {})))
