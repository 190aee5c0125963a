"""The one "never raises" wrapper of measuring jobs (cases, rounds, scenarios, fidelity
checks): a failure of the thing measured becomes a failed result, never an exception."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import BaseModel

from harness.errors import failure
from workloads.base import CaseUnsupported

ResultT = TypeVar("ResultT", bound=BaseModel)


def never_raises(run: Callable[[], ResultT], failed: Callable[[str, str], ResultT]) -> ResultT:
    """`run()`, or `failed(kind, message)` when it raises: kind `unsupported` for
    CaseUnsupported (the workload cannot run in this setting; its message as is), else
    `failure(exc)`'s kind and message. Stamps `started_at` and `duration_s` on (a copy of)
    the result when it has them unset. The one "never raises" wrapper of measuring jobs."""
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
