"""Operators a device runs on the host instead (torch_npu's CPU fallback), from its warnings.

torch_npu (and other PrivateUse1 backends built on torch's CPU fallback) warn once per
operator: "The operator 'aten::X' is not currently supported on the NPU backend and will
fall back to run on the CPU. This may have performance implications." `host_fallbacks()`
collects the operator names of such warnings, whether they arrive through Python's
`warnings` or through `logging`, while a case is built and run.
"""

from __future__ import annotations

import logging
import re
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


@contextmanager
def uncaptured() -> Iterator[None]:
    """A block whose fallbacks are not charged to the case being captured around it (the
    yardsticks: harness kernels read between a case's rounds, not the case's work)."""
    _PAUSED.append(None)
    try:
        yield
    finally:
        _PAUSED.pop()


class _Collect(logging.Handler):
    def __init__(self, found: set[str]) -> None:
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        op = fallback_operator(record.getMessage())
        if op is not None and not _PAUSED:
            self.found.add(op)


@contextmanager
def host_fallbacks() -> Iterator[set[str]]:
    """Collect, into the yielded set, the operators of fallback warnings raised inside the
    block (every occurrence is seen, not only the first per place); other warnings are
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
            yield found
        finally:
            torch.set_warn_always(warn_always)
            root.removeHandler(handler)
