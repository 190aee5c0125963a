"""`bench run --mode converge`: bad input refused with one line (exit 2), and one small run end
to end through the CLI, the stored file and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.store import load_run
from tests.conftest import invoke_bench, run_bench


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--workload", "matmul"],
            "--mode converge trains mlp, gpt, llama, moe, convnet, dit; 'matmul' does not "
            "train to a target.",
        ),
        (["--target-step", "15"], "--target-step must be a multiple of the eval interval 10"),
        (
            ["--reference", "cpu:fp64"],
            "--mode converge trains its reference on cpu:fp32; got --reference 'cpu:fp64'.",
        ),
        (["--seeds", "0"], "Invalid value for '--seeds'"),
    ],
)
def test_bad_converge_input_is_refused_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    defaults = ["--workload", "mlp"] if "--workload" not in args else []
    proc = invoke_bench(
        capsys, "run", "--preset", "tiny", "--mode", "converge", "--out", str(tmp_path),
        *defaults, *args,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.slow
def test_converge_run_stores_its_case_and_the_report_shows_it(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run_bench(
        "run", "--backend", "cpu", "--workload", "mlp", "--mode", "converge,train,infer",
        "--preset", "tiny", "--seeds", "1", "--target-step", "20", "--soak-s", "1",
        "--no-fidelity",
        "--isolate", "none", "--out", str(out),
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train to target" in proc.stdout
    (path,) = out.glob("*.json")
    record = load_run(path)
    (case,) = [c for c in record.cases if c.key.mode == "converge"]
    c = case.convergence
    assert c is not None and case.status == "ok"
    # The CPU in fp32 is the reference itself: the same steps, bit for bit.
    assert c.steps_to_target == c.reference_steps_to_target
    assert c.verdict == "pass", c.reasons
    assert c.target_step == 20 and c.seeds == [0]
    # --soak-s: the seed trained on past the target for 1 s of training (at least a step).
    assert c.soak_steps is not None and c.soak_steps > c.steps_to_target[0]  # type: ignore[operator]
    assert c.curves[-1].eval_steps[0] == 0
    report = run_bench("report", str(path), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Train to a target" in text
    assert "effective penalty" in text
    assert "energy to target (median seed)" in text
    assert (tmp_path / "report" / "figures" / "convergence.png").exists()
