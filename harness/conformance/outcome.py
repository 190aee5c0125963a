"""What a conformance check reports: pass, fail or skip, with the reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Status = Literal["pass", "fail", "skip"]


class CheckFailed(Exception):
    """Raised by a check when the backend breaks the contract; the message says how."""


class CheckSkipped(Exception):
    """Raised by a check that does not apply to this backend; the message says why."""


class CheckResult(BaseModel):
    """One row of the kit's table."""

    name: str
    status: Status
    reason: str = ""
    required: bool = True
    seconds: float = 0.0
    timed_out: bool = False


class KitReport(BaseModel):
    """Every check run against one backend, and the verdict."""

    backend: str
    results: list[CheckResult]
    seconds: float

    def count(self, status: Status) -> int:
        """How many checks ended with `status`."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def passed(self) -> bool:
        """True when no required check failed (skips are allowed)."""
        return not any(r.status == "fail" and r.required for r in self.results)
