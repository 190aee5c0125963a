"""The phase breakdown end to end: a backend whose backward is slower by a fixed delay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harness.analysis.answer import answer
from harness.results.schema import CaseResult
from harness.results.store import load_run
from tests.conftest import invoke_bench


def _run(capsys: pytest.CaptureFixture[str], backend: str, out: Path, *extra: str) -> CaseResult:
    result = invoke_bench(
        capsys, "run", "--backend", backend, "--workload", "mlp", "--mode", "train,infer",
        "--preset", "tiny", "--isolate", "none", "--out", str(out), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("*.json")
    (train,) = [c for c in load_run(path).cases if c.key.mode == "train"]
    return train


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for this test: on a loaded 2-core machine a second intra-op thread
    waits for the scheduler at every parallel op, a delay far larger than a tiny step that
    lands in whichever phase it hits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_slower_backward_is_attributed_to_backward(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    test_plugins: dict[str, str],
    one_thread: None,
) -> None:
    plain = _run(capsys, "cpu", tmp_path / "cpu", "--profile-trace")
    slow = _run(capsys, "slow-backward", tmp_path / "slow")
    assert plain.phases and slow.phases
    # The breakdown puts at least 80% of the time the delay added to the step into backward.
    added = slow.phases.step_s - plain.phases.step_s
    into_backward = slow.phases.phases_s["backward"] - plain.phases.phases_s["backward"]
    assert added > 0 and into_backward >= 0.8 * added

    # The report's sentence for that backend says where the excess goes: backward.
    folders = [str(tmp_path / "cpu"), str(tmp_path / "slow")]
    report = invoke_bench(capsys, "report", *folders, "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stdout + report.stderr
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    (line,) = [s for s in lines if s.startswith("slow-backward / ") and "FLOP-proportional" in s]
    assert "most of the excess goes to backward" in line
    assert (tmp_path / "report" / "figures" / "phases.png").is_file()

    # The profiled run (cpu) stored its operators and wrote its traces beside the results;
    # the report lists the operators whose share grows in training, next to an unprofiled run.
    assert plain.profile and plain.profile.trace and not slow.profile
    assert (tmp_path / "cpu" / plain.profile.trace).is_file()
    assert any(op.phase == "backward" for op in plain.profile.ops)
    (shifts,) = [x for x in lines if x.startswith("| cpu / ") and "self cpu" in x]
    assert "optimizer 0.0%" in shifts

    # A file written before phases, profiles and fallbacks existed loads, compares and reports.
    (path,) = (tmp_path / "cpu").glob("*.json")
    data = json.loads(path.read_text())
    for case in data["cases"]:
        for field in ("phases", "profile", "host_fallbacks"):
            case.pop(field, None)
    data["run_id"] = "0" * len(data["run_id"])  # another run of the same cases
    old = tmp_path / "old" / path.name.replace(".json", "-old.json")
    old.parent.mkdir()
    old.write_text(json.dumps(data))
    assert invoke_bench(capsys, "compare", str(old), str(path)).returncode == 0
    report = invoke_bench(capsys, "report", str(old), str(path), "--out", str(tmp_path / "r2"))
    assert report.returncode == 0, report.stdout + report.stderr


def test_profiling_a_distributed_run_is_refused_with_a_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = invoke_bench(capsys, "run", "--profile", "--nproc", "2", "--preset", "tiny")
    assert result.returncode == 2
    assert "--profile and --profile-trace profile single-process cases only" in result.stderr


def test_a_fallback_only_in_backward_is_a_training_caveat_naming_the_operator(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    out = tmp_path / "fallback"
    train = _run(capsys, "fallback-train", out)
    run = load_run(next(out.glob("*.json")))
    (infer,) = [c for c in run.cases if c.key.mode == "infer"]
    assert train.host_fallbacks == ["aten::fake_backward_op"]
    assert infer.host_fallbacks is None
    (verdict,) = answer([run]).verdicts
    # A caveat at least (a noisy tiny run may add a penalty above or straddling the not-ready
    # line).
    assert verdict.training.status in ("caveats", "undecided", "not ready")
    assert (
        "mlp training runs operator(s) on the host (CPU fallback) that inference does not: "
        "aten::fake_backward_op"
    ) in verdict.training.reasons
    assert not any("fallback" in reason for reason in verdict.inference.reasons)
