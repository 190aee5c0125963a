"""Case isolation: jobs run in a worker process that is respawned after a crash or a hang.

A job is a module-level function from a JSON payload to a JSON answer, handed in by the
caller; this module knows no job type. The parent sends the function (pickled by reference,
so the worker imports its module) and the payload over a pipe, and waits at most the
timeout for the answer. A worker that dies is reported with its signal; one that hangs is
killed. Either way the next job gets a fresh worker. So does the job after one that hit a
sticky device error (illegal address, device-side assert, ACL error): that error leaves the
worker's device context unusable, so the worker is replaced once its answer is in.

A caller may hand in a preparation: one more job with its payload that every fresh worker
runs before its first job, under the start timeout rather than a job's timeout. What every
job of a run shares (importing torch and the caller's modules, process-wide settings) then
happens once per worker, and a job's timeout measures the job: the interpreter's start and
its imports (seconds on a loaded host) no longer eat into it.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Literal

from harness.errors import sticky_device_error
from harness.results.config import Isolation

_READY = "ready"


class WorkerFailure(Exception):
    """The worker died or hung; `kind` is 'crash' or 'timeout'."""

    def __init__(self, kind: Literal["crash", "timeout"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


Job = Callable[[str], str]
"""A job: a module-level function from a JSON payload to a JSON answer."""


def _worker_main(conn: Connection) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what to do with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(_READY)
    while True:
        try:
            job, payload = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        answer = job(payload)
        conn.send((answer, sticky_device_error()))


def describe_exit(exitcode: int | None) -> str:
    """Human words for a worker's exit code: the signal name for a negative code."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (possibly the out-of-memory killer)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"


Preparation = tuple[Job, str]
"""A job and its payload that a fresh worker runs before its first job (its answer unused)."""


class Worker:
    """One spawned worker process and its pipe, prepared (see the module's docstring) when
    `prepare` is given."""

    START_TIMEOUT_S = 120.0

    def __init__(self, prepare: Preparation | None = None) -> None:
        self.poisoned: str | None = None
        """The sticky device error this worker hit, once it has: it must not run more jobs."""
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        if not self._conn.poll(self.START_TIMEOUT_S):
            self.stop()
            raise WorkerFailure("timeout", "the worker process did not start")
        try:
            self._conn.recv()
        except EOFError:
            self.stop()
            raise WorkerFailure(
                "crash", f"the worker process {describe_exit(self.process.exitcode)} at start"
            ) from None
        if prepare is not None:
            job, payload = prepare
            try:
                self.run(job, payload, self.START_TIMEOUT_S)
            except WorkerFailure as exc:
                raise WorkerFailure(exc.kind, f"{exc} (while preparing the worker)") from None

    def run(self, job: Job, payload: str, timeout_s: float) -> str:
        """Send one job and return its answer; raises WorkerFailure on a crash or timeout
        (the worker is then unusable). Sets `poisoned` when the job hit a sticky device error."""
        try:
            self._conn.send((job, payload))
            ready = self._conn.poll(timeout_s)
            if ready:
                answer, self.poisoned = self._conn.recv()
                return answer
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join(5)
            raise WorkerFailure(
                "crash", f"the worker process {describe_exit(self.process.exitcode)}"
            ) from None
        self.stop()
        raise WorkerFailure("timeout", f"no result within the case timeout of {timeout_s:g} s")

    def alive(self) -> bool:
        return self.process.is_alive()

    def usable(self) -> bool:
        """Alive, and its device context not poisoned by a sticky error."""
        return self.poisoned is None and self.alive()

    def stop(self) -> None:
        """End the worker: terminate, then kill if it does not go."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(3)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(3)
        self._conn.close()


class Executor:
    """Runs jobs under an isolation policy: in this process, in one reused worker, or in a
    fresh worker per job."""

    def __init__(self, isolate: Isolation = "worker", prepare: Preparation | None = None) -> None:
        self.isolate = isolate
        self.prepare = prepare
        self._worker: Worker | None = None

    def run(self, job: Job, payload: str, timeout_s: float, fresh: bool = False) -> str:
        """`job(payload)`, run under the isolation policy; raises WorkerFailure when the
        worker crashed or hung. `fresh` starts the job in a new worker even where the policy
        would reuse one (it cannot apply in this process: isolate none ignores it)."""
        if fresh and self.isolate != "none":
            self.close()
        if self.isolate == "none":
            if self.prepare is not None:
                prepare, self.prepare = self.prepare, None  # this process: once
                prepare[0](prepare[1])
            return job(payload)
        if self._worker is None or not self._worker.usable():
            if self._worker is not None:
                self._worker.stop()
            self._worker = Worker(self.prepare)
        try:
            return self._worker.run(job, payload, timeout_s)
        except WorkerFailure:
            self._worker = None
            raise
        finally:
            worker = self._worker
            if worker is not None and (self.isolate == "case" or not worker.usable()):
                worker.stop()
                self._worker = None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
