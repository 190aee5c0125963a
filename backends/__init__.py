"""Device backends: the contract, the built-ins (cpu, cuda, npu) and the plugin registry."""

from backends.base import Availability, Backend, DeviceInfo, DeviceTimer
from backends.registry import BackendError, get_backend, list_backends

__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "DeviceInfo",
    "DeviceTimer",
    "get_backend",
    "list_backends",
]
