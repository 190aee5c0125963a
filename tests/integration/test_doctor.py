import pytest

from tests.conftest import invoke_bench


def test_doctor_prints_each_figure_and_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "doctor", "--drift-s", "1")
    assert proc.returncode in (0, 1)  # 1 only if a validation failed on a busy machine
    for figure in (
        "drift (256x256 matmul, 2 windows of 0.5 s)",
        "max/min",
        "smallest resolvable change (5 rounds per run, ",
        "drift (dispatch yardstick, read after each window)",
        "load average",
        "torch threads vs usable cores",
        "host clock resolution",
        "measure-loop overhead (empty function)",
        "harness / torch.utils.benchmark (512x512 fp32 matmul)",
        "verdict:",
    ):
        assert figure in proc.stdout


def test_doctor_on_an_unavailable_backend_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "doctor", "--backend", "cuda")
    assert proc.returncode == 2
    assert "CPU-only" in proc.stderr
