"""The serving loops: requests arrive on the wall clock (time.perf_counter), the device does
the real work, and every request's first-output and completion times are taken on the host
right after the backend is synchronized (when a serving system could answer).

- Items (`serve_items`): a batching scheduler. When requests are queued it waits for a
  fuller batch until the oldest has waited `max_wait_s` (or no more are coming), then runs
  up to `max_batch` of them in one call.
- Tokens (`serve_tokens`): continuous batching at the granularity of one decode step.
  Between steps, arrived requests take free cache slots (at most `max_batch` in flight) and
  are prefilled one by one (a prefill makes the request's first token; it delays the decode
  step of the others, as in a server without chunked prefill); then one batched decode step
  makes a token for every request in flight; finished requests free their slot.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel

from workloads.serving import ItemServer, TokenServer


class Timings(BaseModel):
    """Host times (seconds from the start of the run) of each request, in request order."""

    arrival_s: list[float]
    first_s: list[float]
    """First output: the first token of an LLM request; the answer of an item request."""
    done_s: list[float]
    duration_s: float


def _wait_until(t0: float, when: float) -> None:
    delay = when - (time.perf_counter() - t0)
    if delay > 0:
        time.sleep(delay)


def serve_items(
    server: ItemServer,
    sync: Callable[[], None],
    arrivals: list[float],
    max_batch: int,
    max_wait_s: float,
) -> Timings:
    """Serve item requests arriving at `arrivals` (sorted, seconds from now); see module
    docstring. `sync` waits for the device."""
    count = len(arrivals)
    done = [0.0] * count
    queued: deque[int] = deque()
    upcoming = 0
    served = 0
    t0 = time.perf_counter()
    while served < count:
        now = time.perf_counter() - t0
        while upcoming < count and arrivals[upcoming] <= now:
            queued.append(upcoming)
            upcoming += 1
        if not queued:
            _wait_until(t0, arrivals[upcoming])
            continue
        deadline = arrivals[queued[0]] + max_wait_s
        if len(queued) < max_batch and upcoming < count and now < deadline:
            _wait_until(t0, min(deadline, arrivals[upcoming]))
            continue
        batch = [queued.popleft() for _ in range(min(max_batch, len(queued)))]
        server.run(len(batch))
        sync()
        finished = time.perf_counter() - t0
        for request in batch:
            done[request] = finished
        served += len(batch)
    return Timings(arrival_s=list(arrivals), first_s=done, done_s=list(done), duration_s=max(done))


def serve_tokens(
    server: TokenServer,
    sync: Callable[[], None],
    arrivals: list[float],
    input_len: list[int],
    output_len: list[int],
    max_batch: int,
) -> Timings:
    """Serve LLM requests arriving at `arrivals` (sorted, seconds from now) with continuous
    batching; see module docstring. `sync` waits for the device."""
    count = len(arrivals)
    first = [0.0] * count
    done = [0.0] * count
    made = [0] * count
    free = list(range(min(max_batch, server.max_batch)))[::-1]
    active: dict[int, int] = {}
    upcoming = 0
    finished = 0
    t0 = time.perf_counter()

    def finish(slot: int, request: int, when: float) -> None:
        nonlocal finished
        done[request] = when
        finished += 1
        server.release(slot)
        free.append(slot)

    while finished < count:
        now = time.perf_counter() - t0
        while free and upcoming < count and arrivals[upcoming] <= now:
            request, slot = upcoming, free.pop()
            upcoming += 1
            server.prefill(slot, input_len[request], request)
            sync()
            now = time.perf_counter() - t0
            first[request] = now
            made[request] = 1
            if output_len[request] <= 1:
                finish(slot, request, now)
            else:
                active[slot] = request
        if not active:
            if upcoming < count:
                _wait_until(t0, arrivals[upcoming])
            continue
        slots = list(active)
        server.decode(slots)
        sync()
        now = time.perf_counter() - t0
        for slot in slots:
            request = active[slot]
            made[request] += 1
            if made[request] >= output_len[request]:
                del active[slot]
                finish(slot, request, now)
    return Timings(arrival_s=list(arrivals), first_s=first, done_s=done, duration_s=max(done))


def one_at_a_time(serve_one: Callable[[int], Timings], count: int) -> Timings:
    """Single-stream: request i is issued when request i - 1 has completed. `serve_one(i)`
    serves request i alone (arriving at 0 of its own clock); times are shifted onto one clock."""
    arrival: list[float] = []
    first: list[float] = []
    done: list[float] = []
    t0 = time.perf_counter()
    for request in range(count):
        issued = time.perf_counter() - t0
        own = serve_one(request)
        arrival.append(issued)
        first.append(issued + own.first_s[0])
        done.append(issued + own.done_s[0])
    return Timings(arrival_s=arrival, first_s=first, done_s=done, duration_s=max(done))
