"""Fallback warnings that reach the process's stderr directly (C++ warnings on autograd
threads, as torch_npu's backward-only fallbacks do) are collected too, and passed on."""

from __future__ import annotations

import os
import threading

import pytest

from harness.measurement.fallbacks import host_fallbacks, uncaptured

BACKWARD = (
    "[W compiler_depend.ts:51] Warning: The operator 'aten::_embedding_dense_backward' is not "
    "currently supported on the NPU backend and will fall back to run on the CPU. This may "
    "have performance implications. (function npu_cpu_fallback)\n"
)


def write_from_another_thread(text: str) -> None:
    thread = threading.Thread(target=lambda: os.write(2, text.encode()))
    thread.start()
    thread.join()


def test_stderr_fallbacks_from_other_threads_are_collected_and_shown(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with host_fallbacks() as found:
        write_from_another_thread(BACKWARD)
        write_from_another_thread("an unrelated line\n")
    assert found == {"aten::_embedding_dense_backward"}
    err = capfd.readouterr().err
    assert "aten::_embedding_dense_backward" in err and "an unrelated line" in err


def test_stderr_fallbacks_of_uncaptured_blocks_are_not_charged(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with host_fallbacks() as found:
        with uncaptured():
            write_from_another_thread(BACKWARD.replace("_embedding_dense_backward", "yard"))
        write_from_another_thread(BACKWARD)
    assert found == {"aten::_embedding_dense_backward"}
    assert "aten::yard" in capfd.readouterr().err


def test_the_ascend_backend_asks_for_a_fresh_process_per_case() -> None:
    from backends.ascend import AscendBackend
    from backends.cpu import CPUBackend

    assert AscendBackend.warns_once_per_process and not CPUBackend.warns_once_per_process
