"""`bench run --nproc N` (and `--scaling`, multi-node): launch torchrun, watch it, record.

The supervisor (the `bench` process) claims the results file, then launches torchrun on the
run's cases (one launch per world size). Global rank 0 appends each finished case to the
file. The supervisor follows the ranks' event files and enforces the case timeout itself:

- a rank that dies makes torchrun end the job (max restarts 0); the supervisor records the
  case as failed (`crash`, naming the rank and how it ended) and relaunches the rest;
- a case whose round runs past the case timeout (a hung rank) is stopped: torchrun gets SIGTERM
  (it terminates its ranks), SIGKILL after a grace period; the case is recorded as
  `timeout` and the rest relaunched;
- any rank still alive after its job ended is killed (every rank writes its pid; it also
  exits by itself when its parent disappears), so no process is left behind.

Ctrl-C or SIGTERM stops the job the same way and leaves the file `incomplete`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from harness.distributed.job import DistJob, EventReader, job_file, read_errors, read_pids
from harness.distributed.launch import (
    check_devices,
    distributed_workloads,
    threads_per_rank,
    torchrun_command,
)
from harness.distributed.scaling import apply_scaling_efficiency, scaling_ladder
from harness.errors import failed_result
from harness.isolation.executor import describe_exit
from harness.results.config import RunConfig
from harness.results.schema import CaseResult, DistInfo, ErrorKind, RunRecord
from harness.results.store import claim_run_path, load_run, prepare_out_dir, save_run
from harness.run.case import CaseSpec
from harness.run.plan import (
    check_dtypes_supported,
    default_workloads,
    plan_cases,
    supported_dtype_names,
)
from harness.run.session import (
    ProgressFn,
    RunInterrupted,
    RunOutcome,
    describe_backend,
    new_record,
    signals_raise,
)

START_TIMEOUT_S = 120.0
"""How long torchrun and its ranks may take to start before the first case begins."""
POLL_S = 0.1
STOP_GRACE_S = 15.0
LOG_TAIL_CHARS = 1500
NOT_STARTED = "the distributed job could not start"
_FAILURE = re.compile(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)")


class Planned:
    """One case of the run: its spec (key.nproc = world size), local processes, index."""

    def __init__(self, index: int, spec: CaseSpec, nproc: int) -> None:
        self.index = index
        self.spec = spec
        self.nproc = nproc


class Supervisor:
    """Runs planned cases through torchrun launches and keeps the results file right."""

    def __init__(
        self,
        config: RunConfig,
        record: RunRecord,
        path: Path | None,
        total: int,
        progress: ProgressFn | None,
        env: dict[str, str],
    ) -> None:
        self.env = env
        self.config = config
        self.record = record
        self.path = path
        self.total = total
        self.progress = progress
        self.timeout = config.case_timeout()

    # --- the results file ----------------------------------------------------------------
    def current(self) -> RunRecord:
        """The record as rank 0 last wrote it (the in-memory one on nodes other than 0)."""
        if self.path is not None:
            self.record = load_run(self.path)
        return self.record

    def add_failure(self, planned: Planned, result: CaseResult) -> None:
        record = self.current()
        record.cases.append(result)
        if self.path is not None:
            save_run(record, self.path)
        if self.progress:
            self.progress(planned.index, self.total, planned.spec, result)

    # --- launches ------------------------------------------------------------------------
    def run_all(self, cases: list[Planned]) -> None:
        """Run `cases` (all of one world size), relaunching after each failed case."""
        pending = list(cases)
        while pending:
            failure = self._launch(pending)
            if failure is None:
                return
            position, result = failure
            self.add_failure(pending[position], result)
            if result.error and result.error.message.startswith(NOT_STARTED):
                for rest in pending[position + 1 :]:
                    self.add_failure(
                        rest,
                        failed_result(CaseResult, rest.spec.key, "crash", result.error.message),
                    )
                return
            pending = pending[position + 1 :]

    def _launch(self, cases: list[Planned]) -> tuple[int, CaseResult] | None:
        """One torchrun launch over `cases`; None when all finished, else the position of
        the failed case and its failed result."""
        folder = Path(tempfile.mkdtemp(prefix="accelbench-dist-"))
        job = DistJob(
            backend=self.config.backend,
            specs=[c.spec for c in cases],
            first_index=cases[0].index,
            results_path=str(self.path) if self.path else None,
            case_timeout_s=self.timeout,
            rounds=self.config.rounds_count(),
            supervisor_pid=os.getpid(),
        )
        job_file(folder).write_text(job.model_dump_json(), encoding="utf-8")
        command = torchrun_command(
            folder,
            cases[0].nproc,
            self.config.nnodes,
            self.config.node_rank,
            self.config.rdzv_endpoint,
        )
        log_path = folder / "torchrun.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            return self._watch(proc, folder, cases)
        finally:
            _stop(proc, folder)
            shutil.rmtree(folder, ignore_errors=True)

    def _watch(
        self, proc: subprocess.Popen[bytes], folder: Path, cases: list[Planned]
    ) -> tuple[int, CaseResult] | None:
        by_index = {c.index: pos for pos, c in enumerate(cases)}
        started: dict[int, float] = {}
        measured: dict[int, set[int]] = {}
        done: set[int] = set()
        reader = EventReader(folder)
        last_progress = time.monotonic()
        while True:
            returncode = proc.poll()
            for rank, event in reader.new_events():
                if event.index not in by_index:
                    continue
                last_progress = time.monotonic()
                planned = cases[by_index[event.index]]
                if event.event == "start" and event.index not in started:
                    started[event.index] = time.monotonic()
                    if self.progress:
                        self.progress(planned.index, self.total, planned.spec, None)
                elif event.event == "round" and event.index in started:
                    started[event.index] = time.monotonic()  # the timeout is per round
                elif event.event == "measured":
                    measured.setdefault(event.index, set()).add(rank)
                elif event.event == "done" and event.index not in done:
                    done.add(event.index)
                    if self.progress and event.result is not None:
                        self.progress(planned.index, self.total, planned.spec, event.result)
            if returncode is not None:
                break
            running = [i for i in started if i not in done]
            now = time.monotonic()
            if not started and now - last_progress > START_TIMEOUT_S:
                _stop(proc, folder)
                message = f"{NOT_STARTED} within {START_TIMEOUT_S:g} s{_log_tail(folder)}"
                return 0, failed_result(CaseResult, cases[0].spec.key, "crash", message)
            if started and not running and now - last_progress > self.timeout:
                _stop(proc, folder)  # stuck between cases or at the end
                returncode = proc.returncode
                break
            if running and now - started[max(running)] > self.timeout:
                index = max(running)
                ranks = sorted(measured.get(index, set()))
                local = range(cases[0].nproc)
                waiting = [r for r in _local_ranks(folder, local) if r not in ranks]
                _stop(proc, folder)
                message = (
                    f"no result within the case timeout of {self.timeout:g} s; the job was "
                    f"stopped. Ranks that had not finished it: "
                    f"{', '.join(map(str, waiting)) or 'none'}"
                )
                planned = cases[by_index[index]]
                return by_index[index], failed_result(
                    CaseResult, planned.spec.key, "timeout", message
                )
            time.sleep(POLL_S)
        return self._after_exit(returncode, folder, cases, by_index, started, done)

    def _after_exit(
        self,
        returncode: int,
        folder: Path,
        cases: list[Planned],
        by_index: dict[int, int],
        started: dict[int, float],
        done: set[int],
    ) -> tuple[int, CaseResult] | None:
        """After torchrun exited: None if every case finished, else the failed case."""
        if self.path is not None:
            unfinished = [c.index for c in cases if c.index not in done]
        else:  # no `done` events on other nodes: a case counts once a later one started
            unfinished = [c.index for c in cases if c.index >= max(started, default=-1)]
            if returncode == 0:
                unfinished = []
        if not unfinished:
            return None
        index = unfinished[0]
        planned = cases[by_index[index]]
        if not started:
            message = f"{NOT_STARTED}: torchrun exited with code {returncode}{_log_tail(folder)}"
            return by_index[index], failed_result(CaseResult, planned.spec.key, "crash", message)
        kind: ErrorKind = "crash"
        message = f"torchrun exited with code {returncode}{_log_tail(folder)}"
        if returncode == 0:
            message = "the distributed job ended before this case finished"
        cause = _root_cause(folder)
        if cause is not None:
            kind, message = cause
        return by_index[index], failed_result(CaseResult, planned.spec.key, kind, message)


def _local_ranks(folder: Path, local: range) -> list[int]:
    """Global ranks of this node's processes (those that wrote a pid file), else `local`."""
    ranks = sorted(int(p.name.removeprefix("pid-rank")) for p in folder.glob("pid-rank*"))
    return ranks or list(local)


def _log_tail(folder: Path) -> str:
    try:
        text = (folder / "torchrun.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.strip().splitlines() if "Warning" not in line]
    tail = "\n".join(lines)[-LOG_TAIL_CHARS:]
    return f"; torchrun said: {tail}" if tail else ""


def _failed_ranks(folder: Path) -> dict[int, int]:
    """rank -> exit code of every failed rank in torchrun's failure report."""
    try:
        text = (folder / "torchrun.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found: dict[int, int] = {}
    for match in _FAILURE.finditer(text):
        found.setdefault(int(match.group(1)), int(match.group(2)))
    return found


def _root_cause(folder: Path) -> tuple[ErrorKind, str] | None:
    """The most likely cause of a failed job: a rank's own error (not inside a collective),
    else a rank that died without a word (signal, exit), else any rank's error."""
    errors = read_errors(folder)
    own = [r for r in sorted(errors) if not errors[r].in_collective]
    if own:
        return errors[own[0]].kind, errors[own[0]].message
    silent = {r: c for r, c in _failed_ranks(folder).items() if r not in errors}
    if silent:
        rank = min(silent)
        return "crash", (
            f"rank {rank} {describe_exit(silent[rank])} during the case; torchrun ended the "
            "job and its other ranks"
        )
    if errors:
        first = errors[min(errors)]
        return first.kind, first.message
    return None


def _stop(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """End torchrun (SIGTERM: it terminates its ranks; SIGKILL after a grace period), then
    kill any rank of this job still alive."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in read_pids(folder):
        if _belongs_to(pid, folder):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # each rank leads its own session


def _belongs_to(pid: int, folder: Path) -> bool:
    """Whether process `pid` is still a rank of this job (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(folder).encode() in cmdline


def run_distributed(
    config: RunConfig, command: list[str] | None = None, progress: ProgressFn | None = None
) -> RunOutcome:
    """Run every case of `config` through torchrun; see the module docstring.

    Raises BenchError for bad input before anything runs, RunInterrupted after a signal
    (the file is then saved `incomplete`). On nodes other than 0 the outcome's path is None:
    global rank 0, on node 0, writes the results file.
    """
    config = config.model_copy(update={"rounds": config.rounds_count()})
    names = distributed_workloads(config.workloads, default_workloads(config.preset))
    specs = plan_cases(config.model_copy(update={"workloads": names}))
    backend = describe_backend(config.backend)  # an accelerator: from a worker, no context here
    check_dtypes_supported(config, supported_dtype_names(backend))
    check_devices(backend, config.nproc)
    ladder = scaling_ladder(config.nproc) if config.scaling else [config.nproc]
    groups: list[list[Planned]] = []
    for nproc in ladder:
        world = nproc * config.nnodes
        groups.append(
            [
                Planned(
                    len(groups) * len(specs) + i,
                    spec.model_copy(update={"key": spec.key.model_copy(update={"nproc": world})}),
                    nproc,
                )
                for i, spec in enumerate(specs)
            ]
        )
    threads = threads_per_rank(max(ladder))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    record = new_record(
        config,
        command,
        backend,
        distributed=DistInfo(
            dist_backend=backend.dist_backend,
            world_size=max(ladder) * config.nnodes,
            world_sizes=[n * config.nnodes for n in ladder],
            nnodes=config.nnodes,
            node_rank=config.node_rank,
            rdzv_endpoint=config.rdzv_endpoint,
            threads_per_rank=threads,
        ),
    )
    path: Path | None = None
    if config.node_rank == 0:
        path = claim_run_path(prepare_out_dir(config.out), record)
        save_run(record, path)
    supervisor = Supervisor(config, record, path, sum(map(len, groups)), progress, env)
    try:
        with signals_raise():
            for group in groups:
                supervisor.run_all(group)
    except RunInterrupted:
        _finish(supervisor, "incomplete")
        raise
    record = _finish(supervisor, "complete")
    return RunOutcome(record=record, path=path)


def _finish(supervisor: Supervisor, status: str) -> RunRecord:
    record = supervisor.current()
    apply_scaling_efficiency(record.cases)
    record.status = status  # type: ignore[assignment]
    record.finished_at = datetime.now(timezone.utc)
    if supervisor.path is not None:
        save_run(record, supervisor.path)
    return record
