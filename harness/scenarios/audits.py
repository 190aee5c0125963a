"""Audits that the timed endpoint run is honest (MLPerf LoadGen's compliance tests in
spirit): its outputs match the same prompts served alone (TEST01), its token counts are
consistent (TEST06), repeated prompts are not silently cheaper (TEST04). Pure functions over
what the client recorded; docs/scenarios.md explains each."""

from __future__ import annotations

import numpy as np

from harness.results.endpoint import AccuracyAudit, RepeatAudit, RequestOutcome, TokenAudit

CACHE_RATIO = 0.7
"""Repeated prompts whose median TTFT is below this fraction of unique prompts' are cached."""


def first_difference(timed: list[str], alone: list[str]) -> int | None:
    """The first chunk (token) position where two streamed outputs differ; None when equal.
    Outputs are compared as text, so a server that splits chunks differently is not flagged;
    the position is counted in the timed run's chunks."""
    a, b = "".join(timed), "".join(alone)
    if a == b:
        return None
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    seen = 0
    for position, piece in enumerate(timed):
        seen += len(piece)
        if seen > common:
            return position
    return len(timed)


def accuracy_audit(timed: list[list[str]], alone: list[list[str]]) -> AccuracyAudit:
    """Timed-run outputs against the accuracy pass (same prompts, one at a time, greedy)."""
    firsts = [first_difference(t, a) for t, a in zip(timed, alone, strict=True)]
    mismatches = sum(f is not None for f in firsts)
    return AccuracyAudit(
        sample=len(timed),
        compared=len(firsts),
        mismatches=mismatches,
        mismatch_rate=mismatches / len(firsts) if firsts else 0.0,
        first_difference=firsts,
    )


def token_audit(outcomes: list[RequestOutcome]) -> TokenAudit:
    """Streamed chunks vs `usage` vs the requested length over the successful requests, and
    each inconsistency named."""
    done = [o for o in outcomes if o.ok]
    usage = [o for o in done if o.usage_tokens is not None]
    differ = [o for o in usage if o.usage_tokens != o.chunks]
    short = [o for o in done if o.produced < o.requested]
    role = [o for o in done if o.role_only_first]
    no_done = [o for o in done if o.no_done]
    violations = []
    if done and not usage:
        violations.append(
            "no usage reported: output tokens are counted chunks (exact only at one token "
            "per chunk)"
        )
    if differ:
        violations.append(
            f"{len(differ)} of {len(usage)} requests streamed a chunk count different from "
            "their usage (several tokens per chunk: TPOT uses usage)"
        )
    if short:
        worst = min(o.produced for o in short)
        violations.append(
            f"{len(short)} requests stopped before the requested length (fewest {worst} "
            "tokens): ignore_eos/min_tokens not honoured"
        )
    if role:
        violations.append(
            f"{len(role)} requests began with a chunk without content (role-only or empty): "
            "TTFT is stamped at the first content chunk, not there"
        )
    if no_done:
        violations.append(f"{len(no_done)} streams ended without the [DONE] sentinel")
    return TokenAudit(
        requests=len(done),
        usage_reported=len(usage),
        chunks_differ_from_usage=len(differ),
        short_of_requested=len(short),
        role_only_first_chunks=len(role),
        no_done=len(no_done),
        violations=violations,
    )


def repeat_audit(
    repeated_ttft: list[float],
    unique_ttft: list[float],
    repeated_latency: list[float],
    unique_latency: list[float],
) -> RepeatAudit:
    """Median TTFT and latency of one prompt sent many times over those of unique prompts of
    the same lengths (both one at a time): below CACHE_RATIO the repeats were cached."""
    ttft = float(np.median(repeated_ttft) / np.median(unique_ttft))
    latency = float(np.median(repeated_latency) / np.median(unique_latency))
    return RepeatAudit(
        requests=len(repeated_ttft),
        ttft_ratio=ttft,
        latency_ratio=latency,
        cached=ttft < CACHE_RATIO,
    )
