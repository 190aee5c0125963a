"""Interleave `case`: each case's rounds back to back, one built case alive at a time (the
worker drops the others before building); under `run`/`workload` the moe memory estimate
counts every copy of the model the run keeps alive, and refuses naming --interleave case."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.registry import get_backend
from harness.results.config import RunConfig
from harness.results.schema import CaseResult
from harness.results.store import load_run
from harness.run.case import RoundSpec
from harness.run.execute import _BUILT, clear_cache, execute_round
from harness.run.plan import plan_cases
from harness.run.schedule import alive_together, case_groups, round_schedule
from tests.conftest import invoke_bench
from workloads.base import CaseUnsupported
from workloads.moe import MoEWorkload, copy_bytes, memory_refusal
from workloads.registry import get_workload


def test_case_interleave_gives_each_case_one_segment_of_all_its_rounds() -> None:
    config = RunConfig(workloads=["mlp", "gpt"], modes=["train", "infer"], preset="tiny")
    keys = [spec.key for spec in plan_cases(config)]
    segments = round_schedule(keys, rounds=3, seed=5, interleave="case")
    assert segments == round_schedule(keys, rounds=3, seed=5, interleave="case")
    assert len(segments) == len(keys)
    for segment in segments:
        assert len({job.case for job in segment.jobs}) == 1
        assert [job.round for job in segment.jobs] == [0, 1, 2]
    order = [segment.jobs[0].case for segment in segments]
    assert sorted(order) == list(range(len(keys)))
    for group in case_groups(keys):  # a group's modes stay next to each other
        places = sorted(order.index(case) for case in group)
        assert places == list(range(places[0], places[0] + len(group)))


def test_copies_alive_follow_the_interleaving() -> None:
    def planned(interleave: str) -> list[tuple[str, str, list[tuple[str, str]], bool]]:
        config = RunConfig(
            workloads=["moe", "mlp"],
            dtypes=["fp32", "bf16"],
            preset="tiny",
            interleave=interleave,  # type: ignore[arg-type]
        )
        return [
            (s.key.workload, s.key.mode, [(c.mode, c.dtype) for c in s.alive_with], s.built_alone)
            for s in plan_cases(config)
            if s.key.dtype == "bf16"
        ]

    workload = planned("workload")
    moe_infer = next(p for p in workload if p[:2] == ("moe", "infer"))
    assert sorted(moe_infer[2]) == [("decode", "bf16"), ("prefill", "bf16"), ("train", "bf16")]
    assert not moe_infer[3]
    run = planned("run")
    moe_infer = next(p for p in run if p[:2] == ("moe", "infer"))
    assert len(moe_infer[2]) == 7 and ("infer", "fp32") in moe_infer[2]  # mlp not counted
    assert all(p[2] == [] and p[3] for p in planned("case"))
    isolated = RunConfig(workloads=["moe"], preset="tiny", interleave="run", isolate="case")
    assert all(s.alive_with == [] for s in plan_cases(isolated))
    keys = [s.key for s in plan_cases(isolated)]
    assert alive_together(keys, "case") == [[] for _ in keys]


def test_a_case_built_alone_drops_the_other_built_cases_first() -> None:
    def two(interleave: str) -> list[RoundSpec]:
        config = RunConfig(
            workloads=["mlp"],
            modes=["infer", "train"],
            preset="tiny",
            interleave=interleave,  # type: ignore[arg-type]
        )
        return [RoundSpec(case=spec, round=0, rounds=1) for spec in plan_cases(config)]

    clear_cache()
    try:
        for interleave, alive in (("run", 2), ("workload", 2), ("case", 1)):
            for job in two(interleave):
                assert execute_round(job).status == "ok"
            assert len(_BUILT) == alive, interleave
            clear_cache()
    finally:
        clear_cache()


WIDE = {"d_expert": "512"}
"""moe tiny with wide experts: about 1.7 MB of fp32 weights; three inference copies do not
fit the 4 MiB test device, one does."""


def test_moe_counts_the_copies_alive_and_names_interleave_case(
    test_plugins: dict[str, str],
) -> None:
    params = MoEWorkload().resolve_params("tiny", WIDE)
    one = copy_bytes(params, "infer", "fp32", 1)
    device = 4 * 2**20
    assert 2 * one < device < 3 * one
    assert memory_refusal(params, "infer", device, 1, "fp32", [("prefill", "fp32")]) is None
    reason = memory_refusal(
        params, "infer", device, 1, "fp32", [("prefill", "fp32"), ("decode", "fp32")]
    )
    assert reason is not None
    assert "2 other built copies of the model" in reason
    assert reason.endswith("Run with --interleave case, which keeps one built case at a time.")
    # A training copy (16 bytes per parameter) cannot fit alone: refused, it is never alive.
    assert copy_bytes(params, "train", "fp32", 1) > device
    assert memory_refusal(params, "infer", device, 1, "fp32", [("train", "fp32")]) is None

    backend = get_backend("small-memory")

    def build_all(interleave: str) -> None:
        config = RunConfig(
            backend="small-memory",
            workloads=["moe"],
            modes=["infer", "prefill", "decode"],
            preset="tiny",
            params=WIDE,
            interleave=interleave,  # type: ignore[arg-type]
        )
        for spec in plan_cases(config):
            get_workload("moe").build(spec.build_context(backend))

    with pytest.raises(CaseUnsupported, match="Run with --interleave case"):
        build_all("workload")
    build_all("case")


MODES = ("infer", "prefill", "decode")


def test_bench_run_refuses_copies_that_cannot_fit_together_and_runs_them_one_at_a_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    def bench_run(interleave: str) -> dict[str, CaseResult]:
        out = tmp_path / interleave
        result = invoke_bench(
            capsys, "run", "--backend", "small-memory", "--workload", "moe", "--param",
            "d_expert=512", "--mode", ",".join(MODES), "--preset", "tiny", "--rounds", "2",
            "--interleave", interleave, "--isolate", "none", "--no-fidelity", "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        (path,) = out.glob("*.json")
        return {c.key.mode: c for c in load_run(path).cases}

    together = bench_run("workload")  # three 1.8 MiB copies alive at once: 5.4 MiB
    assert {c.status for c in together.values()} == {"unsupported"}
    for case in together.values():
        assert case.error is not None
        assert "the run keeps 2 other built copies of the model alive" in case.error.message
        assert "Run with --interleave case" in case.error.message
    alone = bench_run("case")
    assert {mode: c.status for mode, c in alone.items()} == dict.fromkeys(MODES, "ok")
