"""The pure parts of endpoint runs: gamma arrivals, the audits' comparisons, datasets, the
Pareto front and cost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.endpoint import pareto_front
from harness.errors import BenchError
from harness.results.endpoint import RequestOutcome
from harness.scenarios.audits import first_difference, repeat_audit, token_audit
from harness.scenarios.endpoint import usd_per_million
from harness.scenarios.prompts import load_dataset, synthetic_prompt
from harness.scenarios.requests import gamma_arrivals, poisson_arrivals


def test_gamma_arrivals_keep_the_rate_and_one_is_poisson() -> None:
    assert gamma_arrivals(50.0, 100, 0, 0, 1.0) == poisson_arrivals(50.0, 100, 0, 0)
    bursty = np.diff(gamma_arrivals(50.0, 20000, 0, 0, 0.25))
    regular = np.diff(gamma_arrivals(50.0, 20000, 0, 0, 4.0))
    for gaps in (bursty, regular):
        assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.05)
    # Coefficient of variation 1 / sqrt(shape): burstier below 1, more regular above.
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)
    assert regular.std() / regular.mean() == pytest.approx(0.5, rel=0.1)


def test_first_difference_counts_chunks_of_the_timed_run() -> None:
    assert first_difference([" a", " b"], [" a b"]) is None  # chunking alone is no difference
    assert first_difference([" a", " b", " c"], [" a", " b", " x"]) == 2
    assert first_difference([" a", " b"], [" a"]) == 1


def test_token_audit_names_each_inconsistency() -> None:
    fine = RequestOutcome(ok=True, requested=4, produced=4, chunks=4, usage_tokens=4)
    merged = RequestOutcome(ok=True, requested=4, produced=4, chunks=2, usage_tokens=4)
    short = RequestOutcome(ok=True, requested=4, produced=2, chunks=2, usage_tokens=2)
    failed = RequestOutcome(ok=False, reason="timeout", requested=4)
    audit = token_audit([fine, merged, short, failed])
    assert audit.requests == 3 and audit.chunks_differ_from_usage == 1
    assert audit.short_of_requested == 1 and len(audit.violations) == 2
    assert token_audit([fine]).violations == []


def test_repeat_audit_flags_cheaper_repeats() -> None:
    cached = repeat_audit([0.01] * 5, [0.1] * 5, [0.2] * 5, [0.3] * 5)
    assert cached.cached and cached.ttft_ratio == pytest.approx(0.1)
    assert not repeat_audit([0.1] * 5, [0.1] * 5, [0.3] * 5, [0.3] * 5).cached


def test_datasets_take_prompts_or_sharegpt_first_turns(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [
        {"prompt": "hello there", "output_len": 7},
        {
            "conversations": [
                {"from": "system", "value": "be nice"},
                {"from": "human", "value": "why?"},
                {"from": "gpt", "value": "x" * 40},
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    data = load_dataset(str(path))
    assert data.prompts == ["hello there", "why?"] and data.output_len == [7, 10]
    assert len(data.sha256) == 64
    drawn = data.draw(5, 0, 0, default_output=3)
    assert len(drawn.prompts) == 5 and set(drawn.prompts) == {"hello there", "why?"}
    path.write_text("[1, 2]\n")
    with pytest.raises(BenchError, match="line 1 has neither"):
        load_dataset(str(path))


def test_synthetic_prompts_are_unique_and_sized() -> None:
    a, b = synthetic_prompt(32, 0, 0, 0), synthetic_prompt(32, 0, 0, 1)
    assert a != b and len(a.split()) == 32 == len(b.split())
    assert synthetic_prompt(32, 0, 0, 0) == a


def test_pareto_front_and_cost() -> None:
    points = [(100.0, 50.0), (300.0, 20.0), (200.0, 10.0), (80.0, 60.0)]
    assert pareto_front(points) == [True, True, False, True]
    assert usd_per_million(3.6, 1000.0) == pytest.approx(1.0)
    assert usd_per_million(None, 1000.0) is None and usd_per_million(2.0, 0.0) is None
