"""Errors a user can cause (BenchError: the CLI prints its message and exits with code 2), and
how a failure inside a case, a check or a rank is described in its result."""

from __future__ import annotations

import re
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


_STICKY_PATTERNS = (
    # CUDA: errors after which the context is corrupt and every later call fails
    r"illegal memory access",
    r"illegal instruction",
    r"device-side assert",
    r"misaligned address",
    r"unspecified launch failure",
    r"uncorrectable ECC error",
    r"cudaErrorLaunchFailure|cudaErrorIllegalAddress|cudaErrorAssert",
    # Ascend (CANN/ACL): AI Core/vector core exceptions and failed stream synchronisation
    r"ACL_ERROR_RT_\w*EXCEPTION|ACL_ERROR_RT_\w*_ERROR",
    r"AI ?Core (exec )?(exception|error)|aicore exception|vector core exception",
    r"aclrtSynchronize(Stream|Device)\w* failed|ACL stream synchronize failed",
    r"\bE[EZ]9999\b|\b50701[0-9]\b|\b50790[0-9]\b",
)
_STICKY = re.compile("|".join(_STICKY_PATTERNS), re.IGNORECASE)
_sticky_seen: list[str] = []


def is_sticky_device_error(exc: BaseException) -> bool:
    """Whether `exc` is a device runtime error that leaves this process's device context
    unusable (CUDA illegal address, device-side assert, launch failure; Ascend AI Core
    exceptions and ACL errors): every later device call in the process fails too."""
    text = f"{type(exc).__name__}: {exc}"
    return _STICKY.search(text) is not None


def sticky_device_error() -> str | None:
    """The first sticky device error `failure` recorded in this process, else None: the
    process must be replaced before it runs another case."""
    return _sticky_seen[0] if _sticky_seen else None


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
    `exception`, and `describe_exception`'s message. A sticky device error is also noted for
    `sticky_device_error()`, so that the process running cases is replaced."""
    message = describe_exception(exc)
    if is_sticky_device_error(exc):
        _sticky_seen.append(message)
    return ("oom" if is_oom(exc) else "exception"), message


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
