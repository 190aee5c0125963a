"""Device backends: the contract, the built-ins (cpu, cuda, npu) and the plugin registry.

The names below are imported on first use (PEP 562), so that `backends.peaks`, a plain table,
and `backends.device`, the stored device description, can be read without loading torch."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Availability": "backends.base",
    "Backend": "backends.base",
    "DeviceTimer": "backends.base",
    "DeviceInfo": "backends.device",
    "BackendError": "backends.registry",
    "get_backend": "backends.registry",
    "list_backends": "backends.registry",
}

__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "DeviceInfo",
    "DeviceTimer",
    "get_backend",
    "list_backends",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'backends' has no attribute {name!r}")
