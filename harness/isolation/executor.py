"""Case isolation: jobs run in a worker process that is respawned after a crash or a hang.

A job is a module-level function from a JSON payload to a JSON answer, handed in by the
caller; this module knows no job type. The parent sends the function (pickled by reference,
so the worker imports its module) and the payload over a pipe, and waits at most the
timeout for the answer. A worker that dies is reported with its signal; one that hangs is
killed. Either way the next job gets a fresh worker. So does the job after one that hit a
sticky device error (illegal address, device-side assert, ACL error): that error leaves the
worker's device context unusable, so the worker is replaced once its answer is in.
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


class Worker:
    """One spawned worker process and its pipe."""

    START_TIMEOUT_S = 120.0

    def __init__(self) -> None:
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

    def __init__(self, isolate: Isolation = "worker") -> None:
        self.isolate = isolate
        self._worker: Worker | None = None

    def run(self, job: Job, payload: str, timeout_s: float) -> str:
        """`job(payload)`, run under the isolation policy; raises WorkerFailure when the
        worker crashed or hung."""
        if self.isolate == "none":
            return job(payload)
        if self._worker is None or not self._worker.usable():
            if self._worker is not None:
                self._worker.stop()
            self._worker = Worker()
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
