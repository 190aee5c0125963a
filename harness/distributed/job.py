"""The files a supervisor and its ranks share in one job folder (one torchrun launch).

- `job.json`: the DistJob (cases to run, where rank 0 writes results).
- `events-rank<R>.jsonl`: each rank appends `start`, `round` (after each round) and
  `measured` per case; global rank 0 also appends `done` with the case's result. The
  supervisor reads them for progress and for its timeout (per round).
- `error-rank<R>.json`: why a rank gave up on a case (it then exits; torchrun ends the job).
- `pid-rank<R>`: the rank's process id, so the supervisor can make sure none is left behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, Field

from harness.results.schema import CaseResult, ErrorKind
from harness.run.case import CaseSpec

FAULT_ENV = "ACCELBENCH_TEST_FAULT"
"""TEST-ONLY fault injection: `RANK:CASE:ACTION[,...]`, ACTION `exit` (the rank exits with
code 17), `kill` (it SIGKILLs itself, like the OOM killer) or `hang` (it sleeps forever), at
the start of the run's CASE-th case (0-based,
counted over the whole run). Used by tests/integration/test_distributed.py; never set it
for a real benchmark."""


class DistJob(BaseModel):
    """One torchrun launch: the cases every rank runs, in order."""

    backend: str
    specs: list[CaseSpec]
    first_index: int
    """Index of specs[0] among all the run's cases."""
    results_path: str | None
    """Where global rank 0 reads and rewrites the run record; None on nodes other than 0."""
    case_timeout_s: float
    """How long one case (all its rounds) may take."""
    rounds: int = Field(1, ge=1)
    """Rounds per case, measured back to back on every rank and folded by rank 0."""
    supervisor_pid: int | None = None
    """The `bench` process; ranks exit when it is gone (it may have been SIGKILLed)."""


class RankError(BaseModel):
    """Why a rank gave up on a case. `in_collective`: it failed inside torch.distributed
    (most likely because another rank died or hung: a victim, not the cause)."""

    kind: ErrorKind
    message: str
    in_collective: bool = False


class Event(BaseModel):
    event: str
    index: int
    time: float
    result: CaseResult | None = None


def job_file(folder: Path) -> Path:
    return folder / "job.json"


def events_file(folder: Path, rank: int) -> Path:
    return folder / f"events-rank{rank}.jsonl"


def error_file(folder: Path, rank: int) -> Path:
    return folder / f"error-rank{rank}.json"


def pid_file(folder: Path, rank: int) -> Path:
    return folder / f"pid-rank{rank}"


def append_event(
    folder: Path, rank: int, event: str, index: int, result: CaseResult | None = None
) -> None:
    """Append one event line (flushed at once) to this rank's events file."""
    line = Event(event=event, index=index, time=time.time(), result=result).model_dump_json()
    with events_file(folder, rank).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


class EventReader:
    """Reads the events every rank appends, returning only lines not returned before."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}

    def new_events(self) -> list[tuple[int, Event]]:
        """(rank, event) of every complete line written since the last call."""
        found: list[tuple[int, Event]] = []
        for path in sorted(self.folder.glob("events-rank*.jsonl")):
            rank = int(path.stem.removeprefix("events-rank"))
            with path.open("rb") as handle:
                handle.seek(self._offsets.get(path, 0))
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line being written waits
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.decode("utf-8").splitlines():
                found.append((rank, Event.model_validate_json(line)))
        return found


def write_error(folder: Path, rank: int, error: RankError) -> None:
    error_file(folder, rank).write_text(error.model_dump_json(), encoding="utf-8")


def read_errors(folder: Path) -> dict[int, RankError]:
    """rank -> the error it reported before exiting."""
    errors: dict[int, RankError] = {}
    for path in sorted(folder.glob("error-rank*.json")):
        try:
            errors[int(path.stem.removeprefix("error-rank"))] = RankError.model_validate_json(
                path.read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            continue
    return errors


def write_pid(folder: Path, rank: int) -> None:
    pid_file(folder, rank).write_text(str(os.getpid()), encoding="utf-8")


def read_pids(folder: Path) -> list[int]:
    pids = []
    for path in folder.glob("pid-rank*"):
        try:
            pids.append(int(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return pids


def parse_faults(text: str) -> list[tuple[int, int, str]]:
    """(rank, case index, action) of a FAULT_ENV value; ValueError naming the format."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or parts[2] not in ("exit", "kill", "hang"):
            raise ValueError(f"{FAULT_ENV} expects RANK:CASE:exit|kill|hang[,...]; got {item!r}")
        faults.append((int(parts[0]), int(parts[1]), parts[2]))
    return faults


def inject_fault(rank: int, index: int) -> None:
    """TEST-ONLY: exit or hang here if FAULT_ENV asks for it at this rank and case."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    for fault_rank, fault_index, action in parse_faults(text):
        if (fault_rank, fault_index) != (rank, index):
            continue
        if action == "exit":
            os._exit(17)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        while True:
            time.sleep(3600)
