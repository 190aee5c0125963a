"""Operators a device runs on the host instead (torch_npu's CPU fallback), from its warnings.

torch_npu (and other PrivateUse1 backends built on torch's CPU fallback) warn once per
operator: "The operator 'aten::X' is not currently supported on the NPU backend and will
fall back to run on the CPU. This may have performance implications." `host_fallbacks()`
collects the operator names of such warnings, whether they arrive through Python's
`warnings`, through `logging`, or straight to the process's stderr (file descriptor 2: C++
warnings raised on autograd threads never reach Python), while a case is built and run.

torch_npu warns once per operator per process (its own set, which warn-always does not
reset), so a worker that runs several cases records an operator only for the first case that
hits it: `Backend.warns_once_per_process` tells the runner to give such a backend a fresh
worker per case.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

FALLBACK_TEXT = "will fall back to run on the CPU"
"""The words every such warning carries."""
_OPERATOR = re.compile(r"operator '([^']+)'")


def fallback_operator(message: str) -> str | None:
    """The operator a fallback warning names (or `unknown operator` when the text names
    none); None when `message` is not a fallback warning."""
    if FALLBACK_TEXT not in message:
        return None
    match = _OPERATOR.search(message)
    return match.group(1) if match else "unknown operator"


_PAUSED: list[None] = []
"""Non-empty while `uncaptured()` blocks are open: fallbacks then belong to no case."""


_REAL_STDERR: list[int] = []
"""The real stderr's descriptor while `stderr_fallbacks` captures descriptor 2."""


@contextmanager
def uncaptured() -> Iterator[None]:
    """A block whose fallbacks are not charged to the case being captured around it (the
    yardsticks: harness kernels read between a case's rounds, not the case's work). Its
    stderr goes straight to the real stderr."""
    _PAUSED.append(None)
    capture = None
    if _REAL_STDERR:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        capture = os.dup(2)
        os.dup2(_REAL_STDERR[-1], 2)
    try:
        yield
    finally:
        if capture is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(capture, 2)
            os.close(capture)
        _PAUSED.pop()


class _Collect(logging.Handler):
    def __init__(self, found: set[str]) -> None:
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        op = fallback_operator(record.getMessage())
        if op is not None and not _PAUSED:
            self.found.add(op)


STDERR_DRAIN_S = 1.0
"""How long the end of a capture waits for what is still in the pipe (a child process that
outlives the block may hold it open)."""


@contextmanager
def stderr_fallbacks(found: set[str]) -> Iterator[None]:
    """Add to `found` the operators of fallback messages written to file descriptor 2 inside
    the block (by C++ code on any thread). Descriptor 2 is a pipe meanwhile, drained by a
    thread that passes every byte on to the real stderr at once (so nothing is held back if
    the process crashes). Without a usable descriptor 2 the block runs uncaptured."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    read_end, write_end = os.pipe()
    seen = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            with contextlib.suppress(OSError):
                os.write(saved, chunk)
            seen.extend(chunk)

    reader = threading.Thread(target=drain, name="stderr-fallbacks", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    _REAL_STDERR.append(saved)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        _REAL_STDERR.pop()
        os.dup2(saved, 2)  # closes the block's last write end: the reader sees the end
        reader.join(STDERR_DRAIN_S)
        if not reader.is_alive():  # else a child still holds the pipe: leave both to it
            os.close(read_end)
            os.close(saved)
        for line in bytes(seen).decode("utf-8", "replace").splitlines():
            op = fallback_operator(line)
            if op is not None:
                found.add(op)


@contextmanager
def host_fallbacks() -> Iterator[set[str]]:
    """Collect, into the yielded set, the operators of fallback warnings raised inside the
    block (every occurrence is seen, not only the first per place), whether through Python's
    warnings, logging, or the process's stderr (`stderr_fallbacks`); other warnings are
    shown as they would be without the block."""
    found: set[str] = set()
    handler = _Collect(found)
    root = logging.getLogger()
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def showwarning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            op = fallback_operator(str(message))
            if op is None:
                shown(message, category, *args, **kwargs)
            elif not _PAUSED:
                found.add(op)

        warnings.filterwarnings("always", message=f".*{FALLBACK_TEXT}")
        warnings.showwarning = showwarning
        root.addHandler(handler)
        # torch's C++ warnings fire once per process unless warn-always is on; a worker runs
        # many cases, and each must see its own fallbacks.
        warn_always = torch.is_warn_always_enabled()
        torch.set_warn_always(True)
        try:
            with stderr_fallbacks(found):
                yield found
        finally:
            torch.set_warn_always(warn_always)
            root.removeHandler(handler)
