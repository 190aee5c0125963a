"""Errors a user can cause (BenchError: the CLI prints its message and exits with code 2), and
how a failure inside a case, a check or a rank is described in its result."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import BaseModel


class BenchError(Exception):
    """Bad input or an unusable file: the message names what is wrong and the valid choices."""


_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")
"""How device and host allocators word a failed allocation (CUDA/NPU, torch's CPU allocator)."""


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure on the device or the host."""
    import torch  # here, so that importing the CLI's error type stays cheap

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
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


def failed_result(
    cls: type[ResultT], key: Any, kind: str, message: str, /, **extra: Any
) -> ResultT:
    """The result (`cls`: a CaseResult, ScenarioResult, ...) of something that produced no
    usable measurement: status `unsupported` for kind `unsupported`, else `failed`, with
    `error` of `kind` (an ErrorKind) and `message`; `extra` fills other fields (positional
    parameters, so a result's own `kind` field can be among them)."""
    status = "unsupported" if kind == "unsupported" else "failed"
    return cls.model_validate(
        {"key": key, "status": status, "error": {"kind": kind, "message": message}, **extra}
    )


def never_raises(run: Callable[[], ResultT], failed: Callable[[str, str], ResultT]) -> ResultT:
    """`run()`, or `failed(kind, message)` when it raises: kind `unsupported` for
    CaseUnsupported (the workload cannot run in this setting; its message as is), else
    `failure(exc)`'s kind and message. Stamps `started_at` and `duration_s` on (a copy of)
    the result when it has them unset. The one "never raises" wrapper of measuring jobs."""
    from workloads.base import CaseUnsupported  # here: importing the error types stays cheap

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        result = run()
    except CaseUnsupported as exc:
        result = failed("unsupported", str(exc))
    except Exception as exc:
        result = failed(*failure(exc))
    fields = type(result).model_fields
    stamps: dict[str, Any] = {}
    if "started_at" in fields and getattr(result, "started_at", None) is None:
        stamps["started_at"] = started
    if "duration_s" in fields and getattr(result, "duration_s", None) is None:
        stamps["duration_s"] = time.perf_counter() - t0
    return result.model_copy(update=stamps) if stamps else result
