"""Cases that crash, hang, raise, run out of memory or return NaN fail alone; the run goes on
and its file is valid."""

from pathlib import Path

from harness.results.store import load_run
from tests.conftest import run_bench


def test_each_failure_is_recorded_and_later_cases_succeed(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    proc = run_bench(
        "run",
        "--workload",
        "crashing,hanging,raising,nan,oom,mlp",
        "--preset",
        "tiny",
        "--case-timeout",
        "8",
        "--out",
        str(tmp_path),
        env=test_plugins,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("*.json")
    record = load_run(path)
    assert record.status == "complete"
    by_workload = {c.key.workload: c for c in record.cases if c.key.mode == "infer"}
    errors = {name: c.error for name, c in by_workload.items()}
    assert errors["crashing"] and errors["crashing"].kind == "crash"
    assert "SIGSEGV" in errors["crashing"].message
    assert errors["hanging"] and errors["hanging"].kind == "timeout"
    assert errors["raising"] and errors["raising"].kind == "exception"
    assert "deliberate failure while building" in errors["raising"].message
    assert errors["nan"] and errors["nan"].kind == "nonfinite"
    assert errors["oom"] and errors["oom"].kind == "oom"
    assert "can't allocate memory" in errors["oom"].message
    assert by_workload["mlp"].status == "ok"
    assert "5 case(s) failed" in proc.stdout


def test_backend_hook_crashing_in_training_spares_inference(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    for backend, kind in (("segv-train", "crash"), ("hang-train", "timeout")):
        out = tmp_path / backend
        proc = run_bench(
            "run",
            "--backend",
            backend,
            "--workload",
            "mlp",
            "--mode",
            "train,infer",
            "--preset",
            "tiny",
            "--case-timeout",
            "8",
            "--out",
            str(out),
            env=test_plugins,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (path,) = out.glob("*.json")
        cases = {c.key.mode: c for c in load_run(path).cases}
        assert cases["train"].status == "failed"
        assert cases["train"].error and cases["train"].error.kind == kind
        assert cases["infer"].status == "ok"
