"""How long availability() may take: built-in runtimes get minutes (first initialisation of
torch_npu/ACL or cuInit with many ranks at once is slow), plugins 20 s, both overridable, and
the message when the cap is hit says how to raise it."""

from __future__ import annotations

import pytest

import backends.registry
from backends.ascend import AscendBackend
from backends.cuda import CUDABackend
from backends.registry import (
    AVAILABILITY_TIMEOUT_ENV,
    AVAILABILITY_TIMEOUT_S,
    _safe_availability,
    availability_timeout_s,
    get_backend_class,
)


def test_builtins_get_a_longer_cap_than_plugins(
    test_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AVAILABILITY_TIMEOUT_ENV, raising=False)
    assert availability_timeout_s(CUDABackend) >= 120
    assert availability_timeout_s(AscendBackend) >= 120
    assert availability_timeout_s(get_backend_class("healthy-cpu")) == AVAILABILITY_TIMEOUT_S
    monkeypatch.setenv(AVAILABILITY_TIMEOUT_ENV, "600")
    assert availability_timeout_s(CUDABackend) == 600
    monkeypatch.setenv(AVAILABILITY_TIMEOUT_ENV, "not a number")
    assert availability_timeout_s(CUDABackend) >= 120


def test_the_cap_message_names_the_variable(
    test_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AVAILABILITY_TIMEOUT_ENV, "0.5")
    availability = _safe_availability(get_backend_class("hanging-availability"))
    assert not availability.ok
    assert "did not answer within 0.5 s" in availability.explain()
    assert AVAILABILITY_TIMEOUT_ENV in availability.explain()
    assert backends.registry.BUILTIN_AVAILABILITY_TIMEOUT_S > AVAILABILITY_TIMEOUT_S
