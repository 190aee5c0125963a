"""Helpers for Backend.settings(): environment variables and torch-wide flags that change
numerics or speed, read the same way by every backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import torch


def env_settings(names: Iterable[str] = (), prefixes: Iterable[str] = ()) -> dict[str, str]:
    """`$NAME` -> value for each named variable that is set and each set variable starting
    with one of `prefixes` (e.g. "NCCL_")."""
    prefixes = tuple(prefixes)
    wanted = set(names)
    return {
        f"${name}": value
        for name, value in sorted(os.environ.items())
        if name in wanted or (prefixes and name.startswith(prefixes))
    }


def ask(fn: Callable[[], object]) -> str | None:
    """str(fn()), or None when it raises or answers None (settings are best effort)."""
    try:
        value = fn()
    except Exception:
        return None
    return None if value is None else str(value)


def torch_settings() -> dict[str, str]:
    """Process-wide torch flags every device honours: fp32 matmul precision and deterministic
    algorithms."""
    found = {
        "torch.float32_matmul_precision": ask(torch.get_float32_matmul_precision),
        "torch.deterministic_algorithms": ask(torch.are_deterministic_algorithms_enabled),
    }
    return {name: value for name, value in found.items() if value is not None}
