"""Errors a user can cause (BenchError: the CLI prints its message and exits with code 2), and
how a failure inside a case, a check or a rank is described in its result."""

from __future__ import annotations

import traceback
from typing import Any, TypeVar

from pydantic import BaseModel


class BenchError(Exception):
    """Bad input or an unusable file: the message names what is wrong and the valid choices."""


_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")
"""How device and host allocators word a failed allocation (CUDA/NPU, torch's CPU allocator)."""


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure on the device or the host: a MemoryError, a
    `torch.OutOfMemoryError` (told by its class, so this module never imports torch), or an
    error worded as one."""
    if isinstance(exc, MemoryError) or any(
        (cls.__module__, cls.__name__) == ("torch", "OutOfMemoryError") for cls in type(exc).__mro__
    ):
        return True
    text = str(exc).lower()
    return any(phrase in text for phrase in _OOM_PHRASES)


def raising_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame `exc` was raised from, or None without a traceback."""
    return traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None


def describe_exception(exc: BaseException) -> str:
    """`Type: message (at file:line)` of the innermost frame: what a failed result reports."""
    frame = raising_frame(exc)
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def failure(exc: BaseException) -> tuple[str, str]:
    """How a failed case records `exc`: kind `oom` when it ran out of memory, else
    `exception`, and `describe_exception`'s message."""
    return ("oom" if is_oom(exc) else "exception"), describe_exception(exc)


ResultT = TypeVar("ResultT", bound=BaseModel)


def failed_result(cls: type[ResultT], key: Any, kind: str, message: str, **extra: Any) -> ResultT:
    """The result (`cls`: a CaseResult, ScenarioResult, ...) of something that produced no
    usable measurement: status `unsupported` for kind `unsupported`, else `failed`, with
    `error` of `kind` (an ErrorKind) and `message`."""
    status = "unsupported" if kind == "unsupported" else "failed"
    return cls.model_validate(
        {"key": key, "status": status, "error": {"kind": kind, "message": message}, **extra}
    )
