"""The isolation executor's preparation: every fresh worker runs it once before its first
job, under the start timeout, so a job's timeout measures the job."""

from __future__ import annotations

import pytest

from harness.isolation.executor import Executor, WorkerFailure
from tests.fixtures import jobs


def test_each_fresh_worker_is_prepared_once_before_its_first_job() -> None:
    with Executor("worker", (jobs.prepare, "p")) as executor:
        first = executor.run(jobs.prepared, "", 60)
        second = executor.run(jobs.prepared, "", 60)
        assert first == second and first.startswith("p|")  # one worker, prepared once
        with pytest.raises(WorkerFailure) as crashed:
            executor.run(jobs.crash, "", 60)
        assert crashed.value.kind == "crash" and "exited with code 4" in str(crashed.value)
        again = executor.run(jobs.prepared, "", 60)
        assert again.startswith("p|") and again != first  # a fresh worker, prepared again
    with Executor("case", (jobs.prepare, "q")) as executor:
        answers = [executor.run(jobs.prepared, "", 60) for _ in range(2)]
        assert [a.split("|")[0] for a in answers] == ["q", "q"] and answers[0] != answers[1]


def test_the_preparation_does_not_count_against_a_jobs_timeout() -> None:
    # The preparation takes longer than the job's timeout; the job itself is instant.
    with Executor("worker", (jobs.prepare, "slow:3")) as executor:
        assert executor.run(jobs.prepared, "", 2).startswith("slow:3|")


def test_a_crashing_preparation_fails_the_job_that_needed_the_worker() -> None:
    with (
        Executor("worker", (jobs.prepare, "crash")) as executor,
        pytest.raises(WorkerFailure) as failed,
    ):
        executor.run(jobs.prepared, "", 60)
    assert failed.value.kind == "crash"
    assert str(failed.value) == (
        "the worker process exited with code 3 (while preparing the worker)"
    )


def test_in_this_process_the_preparation_runs_once() -> None:
    jobs.PREPARED.clear()
    with Executor("none", (jobs.prepare, "here")) as executor:
        executor.run(jobs.prepared, "", 60)
        answer = executor.run(jobs.prepared, "", 60)
    assert answer.split("|")[0] == "here"
    jobs.PREPARED.clear()
