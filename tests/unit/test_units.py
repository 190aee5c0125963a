"""harness.units: the one formatter of seconds, bytes, rates and plain numbers."""

from __future__ import annotations

import math

import pytest

from harness.units import (
    format_bytes,
    format_number,
    format_percent,
    format_rate,
    format_seconds,
    time_unit,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (2.5, "2.5 s"),
        (120.0, "120 s"),
        (1.0, "1 s"),
        (0.00123, "1.23 ms"),
        (1e-3, "1 ms"),
        (4.56e-5, "45.6 us"),
        (7e-8, "70 ns"),
        (4e-10, "0.4 ns"),
        (0.0, "0 ns"),
        (-0.002, "-2 ms"),
        (math.inf, "inf s"),
        (-math.inf, "-inf s"),
        (math.nan, "nan"),
        (None, "-"),
    ],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_time_unit_picks_the_largest_unit_not_above_the_value() -> None:
    assert time_unit(3.0) == ("s", 1.0)
    assert time_unit(0.5) == ("ms", 1e-3)
    assert time_unit(5e-6) == ("us", 1e-6)
    assert time_unit(5e-6, micro="µs") == ("µs", 1e-6)
    assert time_unit(5e-10) == ("ns", 1e-9)
    assert time_unit(0.0) == ("ns", 1e-9)
    assert time_unit(-0.5) == ("ms", 1e-3)


@pytest.mark.parametrize(
    ("count", "kwargs", "text"),
    [
        (512, {}, "512 B"),
        (0, {}, "0 B"),
        (2**10, {}, "1.0 KiB"),
        (3 * 2**19, {}, "1.5 MiB"),
        (5 * 2**30, {}, "5.0 GiB"),
        (2**40, {}, "1024.0 GiB"),
        (-(2**20), {}, "-1.0 MiB"),
        (64 * 2**10, {"spec": "g"}, "64 KiB"),
        (3 * 2**19, {"spec": "g"}, "1.5 MiB"),
        (3 * 2**30, {"unit": "MiB"}, "3072.0 MiB"),
        (2**19, {"unit": "MiB"}, "0.5 MiB"),
        (math.inf, {}, "inf B"),
        (math.nan, {}, "nan"),
        (None, {}, "-"),
        (None, {"unit": "MiB"}, "-"),
    ],
)
def test_format_bytes(count: float | None, kwargs: dict[str, str], text: str) -> None:
    assert format_bytes(count, **kwargs) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1.5e12, "FLOP/s", "1.5 TFLOP/s"),
        (2.34e9, "B/s", "2.34 GB/s"),
        (1e6, "samples/s", "1 Msamples/s"),
        (2500.0, "tokens/s", "2.5 ktokens/s"),
        (12.0, "B/s", "12 B/s"),
        (0.0, "FLOP/s", "0 FLOP/s"),
        (-2e9, "FLOP/s", "-2 GFLOP/s"),
        (2e15, "FLOP/s", "2e+03 TFLOP/s"),
        (2e9, "", "2 G"),
        (12.0, "", "12"),
        (math.inf, "FLOP/s", "inf FLOP/s"),
        (math.nan, "FLOP/s", "nan"),
        (None, "FLOP/s", "-"),
    ],
)
def test_format_rate(value: float | None, unit: str, text: str) -> None:
    assert format_rate(value, unit) == text


def test_format_number_and_percent() -> None:
    assert format_number(1.23456) == "1.23"
    assert format_number(1.23456, 2) == "1.2"
    assert format_number(1234567.0) == "1.23e+06"
    assert format_number(0.0) == "0"
    assert format_number(-0.5) == "-0.5"
    assert format_number(math.inf) == "inf"
    assert format_number(math.nan) == "nan"
    assert format_number(None) == "-"
    assert format_percent(0.256) == "25.6%"
    assert format_percent(0.0) == "0.0%"
    assert format_percent(1.5, 0) == "150%"
    assert format_percent(-0.1) == "-10.0%"
    assert format_percent(None) == "-"
