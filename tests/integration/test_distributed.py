"""`bench run --nproc 2` through torchrun on gloo (CPU): results, scaling, failures, cleanup.

The fault test uses ACCELBENCH_TEST_FAULT (harness.distributed.job.FAULT_ENV), a TEST-ONLY hook
read by the distributed worker that makes a rank exit or hang at a given case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.results.schema import RunRecord
from harness.results.store import load_run
from tests.conftest import invoke_bench, pythonpath, run_bench


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment carries `marker` (ours: torchrun, ranks)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append(int(proc.name))
    return found


def _run(out: Path, *args: str, fault: str | None = None) -> tuple[RunRecord, str, int]:
    marker = f"ACCELBENCH_TEST_MARKER={uuid.uuid4().hex}"
    env = {"OMP_NUM_THREADS": "1", marker.split("=")[0]: marker.split("=")[1]}
    if fault:
        env["ACCELBENCH_TEST_FAULT"] = fault
    proc = run_bench("run", "--preset", "tiny", "--out", str(out), *args, env=env, timeout=240)
    assert _processes_with(marker) == [], "a process of the distributed run was left behind"
    (path,) = out.glob("*.json")
    return load_run(path), proc.stdout + proc.stderr, proc.returncode


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_two_process_all_to_all_busbw_and_expert_parallel_moe_training(tmp_path: Path) -> None:
    record, output, code = _run(
        tmp_path, "--workload", "allreduce,moe", "--mode", "all_to_all,train", "--nproc", "2"
    )
    assert code == 0, output
    cases = {case.key.id: case for case in record.cases}
    probe = cases["allreduce/all_to_all/fp32/b1/tiny/np2"]
    assert probe.status == "ok" and probe.collectives
    for point in probe.collectives:
        assert point.busbw == pytest.approx(point.algbw * (2 - 1) / 2)
    train = cases["moe/train/fp32/b2/tiny/np2"]
    assert train.status == "ok" and train.per_rank
    assert [t.rank for t in train.per_rank] == [0, 1]
    assert train.extra["params_active"] < train.extra["params_total"]
    assert train.extra["expert_parallel_ranks"] == 2  # experts sharded, tokens via all_to_all


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_two_process_gloo_allreduce_and_ddp_train_with_scaling(tmp_path: Path) -> None:
    record, output, code = _run(
        tmp_path,
        "--workload",
        "allreduce,mlp",
        "--mode",
        "all_reduce,train,infer",
        "--nproc",
        "2",
        "--scaling",
    )
    assert code == 0, output
    info = record.distributed
    assert info and info.dist_backend == "gloo" and info.world_size == 2
    assert info.world_sizes == [1, 2] and info.threads_per_rank == 1
    cases = {case.key.id: case for case in record.cases}
    assert set(cases) == {
        "allreduce/all_reduce/fp32/b1/tiny",
        "mlp/train/fp32/b16/tiny",
        "allreduce/all_reduce/fp32/b1/tiny/np2",
        "mlp/train/fp32/b16/tiny/np2",
        "mlp/infer/fp32/b16/tiny",
        "mlp/infer/fp32/b16/tiny/np2",
    }
    # one process: the collectives probe is skipped with a clear reason, not a crash
    alone = cases["allreduce/all_reduce/fp32/b1/tiny"]
    assert alone.status == "unsupported" and alone.error
    assert "needs --nproc >= 2" in alone.error.message

    probe = cases["allreduce/all_reduce/fp32/b1/tiny/np2"]
    assert probe.status == "ok" and probe.collectives
    assert [p.size_bytes for p in probe.collectives] == [1024, 4096, 16384, 65536]
    for point in probe.collectives:
        assert point.algbw == pytest.approx(point.size_bytes / point.median_s)
        assert point.busbw == pytest.approx(point.algbw * 2 * (2 - 1) / 2)
    assert probe.extra["latency_us"] > 0
    assert [t.rank for t in probe.per_rank or []] == [0, 1]

    train = cases["mlp/train/fp32/b16/tiny/np2"]
    assert train.status == "ok" and train.measurement and train.per_rank
    assert [t.rank for t in train.per_rank] == [0, 1]
    # DDP's all-reduce is split out of backward (timed again inside no_sync()).
    assert train.phases and "no_sync()" in train.phases.attribution
    assert {"forward", "backward", "communication", "optimizer"} <= set(train.phases.phases_s)
    steps = train.measurement.samples_s
    assert all(len(t.samples_s) == len(steps) for t in train.per_rank)
    for i, step in enumerate(steps):  # step time = max over ranks, sample by sample
        assert step == max(t.samples_s[i] for t in train.per_rank)
    assert train.throughput and train.throughput.value == pytest.approx(
        2 * 16 / train.measurement.median
    )
    replicas = cases["mlp/infer/fp32/b16/tiny/np2"]  # independent replicas, aggregated
    assert replicas.status == "ok" and replicas.measurement and replicas.throughput
    assert replicas.throughput.value == pytest.approx(2 * 16 / replicas.measurement.median)
    assert replicas.scaling_efficiency is not None
    base = cases["mlp/train/fp32/b16/tiny"]
    assert base.per_rank and len(base.per_rank) == 1
    assert base.scaling_efficiency == pytest.approx(1.0)
    assert train.scaling_efficiency == pytest.approx(
        (train.throughput.value / 2) / base.throughput.value  # type: ignore[union-attr]
    )
    assert "busbw" in output and "scaling efficiency" in output
    assert "world size 1, 2" in output


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_rounds_under_nproc_store_every_round_folded_like_one_process(tmp_path: Path) -> None:
    record, output, code = _run(
        tmp_path, "--workload", "mlp", "--mode", "train", "--nproc", "2", "--rounds", "3"
    )
    assert code == 0, output
    assert record.config.rounds == 3
    (train,) = record.cases
    assert train.status == "ok", train.error
    m = train.measurement
    assert m is not None and m.rounds == 3 and sorted(set(m.sample_rounds)) == [0, 1, 2]
    assert train.per_rank and [len(t.samples_s) for t in train.per_rank] == [m.n, m.n]
    for i, step in enumerate(m.samples_s):  # step time = max over ranks, sample by sample
        assert step == max(t.samples_s[i] for t in train.per_rank)
    assert train.yardstick and all(len(v) == 3 for v in train.yardstick.values())
    assert train.phases and "no_sync()" in train.phases.attribution
    assert train.energy is None and "not measured with 2 processes" in (train.energy_note or "")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_dead_or_hung_rank_fails_its_case_and_the_run_goes_on(tmp_path: Path) -> None:
    record, output, code = _run(
        tmp_path,
        "--workload",
        "mlp",
        "--mode",
        "train",
        "--batch",
        "4,8,12",
        "--nproc",
        "2",
        "--case-timeout",
        "12",  # per round: a tiny round takes under 2 s on a loaded 2-core host
        fault="0:0:kill,1:1:hang",
    )
    assert code == 1, output
    assert record.status == "complete"
    killed, hung, fine = record.cases
    assert killed.status == "failed" and killed.error and killed.error.kind == "crash"
    assert "rank 0 killed by SIGKILL" in killed.error.message
    assert hung.status == "failed" and hung.error and hung.error.kind == "timeout"
    assert "case timeout of 12 s" in hung.error.message
    assert fine.status == "ok", fine.error
    assert fine.per_rank and len(fine.per_rank) == 2
    assert "2 case(s) failed" in output


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_every_rank_and_keeps_an_incomplete_file(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    env = {"OMP_NUM_THREADS": "1", "ACCELBENCH_TEST_MARKER": marker, "PYTHONPATH": pythonpath()}
    batches = ",".join(str(b) for b in range(1, 41))
    args = ["run", "--preset", "tiny", "--workload", "mlp", "--mode", "train", "--batch", batches]
    bench = subprocess.Popen(
        [sys.executable, "-m", "harness", *args, "--nproc", "2", "--out", str(tmp_path)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until a case is written
            files = list(tmp_path.glob("*.json"))
            if files and load_run(files[0]).cases:
                break
            time.sleep(0.2)
        bench.send_signal(signal.SIGINT)
        output = bench.communicate(timeout=60)[0]
    finally:
        bench.kill()
    assert bench.returncode == 130, output
    assert "partial results kept" in output
    assert _processes_with(f"ACCELBENCH_TEST_MARKER={marker}") == []
    (path,) = tmp_path.glob("*.json")
    record = load_run(path)
    assert record.status == "incomplete" and 1 <= len(record.cases) < 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_two_nodes_pass_through_to_torchrun_and_node_0_writes(tmp_path: Path) -> None:
    """Two `bench` processes on this machine play two nodes of one process each."""
    args = ["--workload", "mlp", "--mode", "train", "--nproc", "1", "--nnodes", "2"]
    args += ["--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath()}
    other = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--preset", "tiny", *args, "--node-rank", "1"],
        env={**os.environ, **env, "COLUMNS": "200"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        record, output, code = _run(tmp_path / "node0", *args, "--node-rank", "0")
        node1 = other.communicate(timeout=120)[0]
    finally:
        other.kill()
    assert code == 0, output
    assert other.returncode == 0, node1
    assert "node 1 done; results: written by global rank 0 on node 0" in node1
    assert list(tmp_path.glob("**/*.json")) == list((tmp_path / "node0").glob("*.json"))
    info = record.distributed
    assert info and info.nnodes == 2 and info.world_size == 2
    assert info.rdzv_endpoint and info.rdzv_endpoint.startswith("127.0.0.1:")
    (case,) = record.cases
    assert case.status == "ok" and case.key.nproc == 2 and case.per_rank
    assert [t.rank for t in case.per_rank] == [0, 1]


BAD_OPTIONS = [
    (["--nproc", "0"], "--nproc: input should be greater than or equal to 1, got 0."),
    (["--nproc", "2", "--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
    (
        ["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "node0:29500"],
        "--node-rank 2 is out of range for --nnodes 2 (valid: 0..1)",
    ),
    (["--nproc", "2", "--rdzv-endpoint", "no port"], "--rdzv-endpoint expects HOST:PORT"),
    (["--scaling"], "--scaling measures 1..N processes per node and needs --nproc N with N >= 2"),
]


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS)
def test_bad_distributed_options_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke_bench(capsys, "run", "--workload", "mlp", "--out", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_allreduce_in_one_process_is_unsupported_not_a_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = invoke_bench(
        capsys,
        "run",
        "--workload",
        "allreduce",
        "--mode",
        "broadcast",
        "--preset",
        "tiny",
        "--isolate",
        "none",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout
    (path,) = tmp_path.glob("*.json")
    (case,) = load_run(path).cases
    assert case.status == "unsupported" and case.error
    assert "needs --nproc >= 2" in case.error.message
    assert "unsupported" in result.stdout


def _expert_parallel_rank(rank: int, port: int) -> None:
    """One rank of test_expert_parallel_moe_equals_the_single_process_model (spawned)."""
    import torch
    import torch.distributed as dist

    from tests.workloads.helpers import build
    from workloads.base import WorkloadError
    from workloads.moe import build_moe, moe_layers

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        instance, params = build("moe", capacity_factor="0")
        torch.manual_seed(0)  # the seed BuildContext.materialize builds under
        whole = build_moe(params)
        sharded = instance.model  # type: ignore[attr-defined]
        tokens, _ = instance.batch  # type: ignore[attr-defined]
        for model in (sharded, whole):
            model.train()
            model(tokens).float().logsumexp(-1).mean().backward()
        torch.testing.assert_close(sharded(tokens), whole(tokens))
        for mine, full in zip(moe_layers(sharded), moe_layers(whole), strict=True):
            local = mine.w_gate.shape[0]
            assert local == full.w_gate.shape[0] // 2
            # Every rank trains on the same batch: the averaged expert gradient is the
            # single-process one.
            expected = full.w_gate.grad[rank * local : (rank + 1) * local]  # type: ignore[index]
            torch.testing.assert_close(mine.w_gate.grad, expected)
        try:
            build("moe", n_expert="3")
        except WorkloadError as error:
            assert "n_expert (3) must be divisible by the number of processes (2)" in str(error)
        else:
            raise AssertionError("3 experts were sharded over 2 ranks")
    finally:
        dist.destroy_process_group()


def test_expert_parallel_moe_equals_the_single_process_model() -> None:
    """Experts sharded over two gloo ranks, tokens exchanged with all_to_all_single: the same
    logits and (rank-local) expert gradients as the whole model in one process."""
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_expert_parallel_rank, args=(port,), nprocs=2, join=True)
