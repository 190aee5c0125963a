"""Backend lookup: the built-ins plus installed plugins of the `bench.backends` group."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from pydantic import BaseModel

from backends.accelerator import BackendUnavailable
from backends.ascend import AscendBackend
from backends.base import Availability, Backend
from backends.cpu import CPUBackend
from backends.cuda import CUDABackend

ENTRY_POINT_GROUP = "bench.backends"
BUILTINS: dict[str, type[Backend]] = {
    CPUBackend.name: CPUBackend,
    CUDABackend.name: CUDABackend,
    AscendBackend.name: AscendBackend,
}


class BackendError(Exception):
    """A backend was asked for that cannot be had; the message says why and what exists."""


class BackendEntry(BaseModel):
    """One known backend name, where it comes from, and whether it can run here."""

    name: str
    source: str
    availability: Availability


def _plugin_entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_plugin(ep: EntryPoint) -> type[Backend]:
    """Import a plugin's class, checking that it is a Backend; raises with the cause."""
    try:
        cls = ep.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit or worse from a plugin must not end `bench`
        raise BackendError(
            f"backend plugin '{ep.name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(
            f"backend plugin '{ep.name}' ({ep.value}) is not a subclass of backends.base.Backend."
        )
    return cls


AVAILABILITY_TIMEOUT_S = 20.0
"""How long a plugin's availability() may take."""
BUILTIN_AVAILABILITY_TIMEOUT_S = 300.0
"""How long a built-in's may take: the first initialisation of torch_npu/ACL, or cuInit with
eight ranks starting at once on one machine, can take well over 20 s."""
AVAILABILITY_TIMEOUT_ENV = "ACCELBENCH_AVAILABILITY_TIMEOUT_S"

T = TypeVar("T")


@dataclass(frozen=True)
class GuardedCall(Generic[T]):
    """How a call made through `call_with_timeout` ended."""

    finished: bool
    value: T | None = None
    error: BaseException | None = None


def call_with_timeout(fn: Callable[[], T], timeout_s: float, label: str = "call") -> GuardedCall[T]:
    """Run `fn` in a daemon thread and wait at most `timeout_s`. Never raises: a hang gives
    finished=False (the thread is abandoned), an exception of any kind is returned in `error`.
    For plugin code that the contract says must not raise or hang, but might."""
    answer: list[GuardedCall[T]] = []

    def call() -> None:
        try:
            answer.append(GuardedCall(finished=True, value=fn()))
        except BaseException as exc:
            answer.append(GuardedCall(finished=True, error=exc))

    thread = threading.Thread(target=call, name=label, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answer[0] if answer else GuardedCall(finished=False)


def availability_timeout_s(cls: type[Backend]) -> float:
    """How long cls.availability() may take: $ACCELBENCH_AVAILABILITY_TIMEOUT_S where set to a
    positive number, else BUILTIN_AVAILABILITY_TIMEOUT_S for built-ins and
    AVAILABILITY_TIMEOUT_S for plugins."""
    raw = os.environ.get(AVAILABILITY_TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value > 0:
        return value
    builtin = BUILTINS.get(cls.name) is cls
    return BUILTIN_AVAILABILITY_TIMEOUT_S if builtin else AVAILABILITY_TIMEOUT_S


def _safe_availability(cls: type[Backend]) -> Availability:
    """cls.availability(), guarded: an exception or a hang (no answer within
    availability_timeout_s(cls)) becomes ok=False with the reason."""
    limit = availability_timeout_s(cls)
    call = call_with_timeout(cls.availability, limit, f"availability-{cls.__name__}")
    if not call.finished:
        return Availability(
            ok=False,
            reason=(
                f"availability() did not answer within {limit:g} s; a device runtime's "
                "first start can take longer."
            ),
            hint=f"Give it longer with {AVAILABILITY_TIMEOUT_ENV}=SECONDS.",
        )
    if call.error is not None:
        return Availability(
            ok=False, reason=f"availability() raised {type(call.error).__name__}: {call.error}"
        )
    if not isinstance(call.value, Availability):
        return Availability(
            ok=False,
            reason=f"availability() returned {type(call.value).__name__}, not Availability.",
        )
    return call.value


def backend_availability(cls: type[Backend]) -> Availability:
    """cls.availability(), guarded as for `list backends`: never raises or hangs past
    `availability_timeout_s(cls)`."""
    return _safe_availability(cls)


def list_backends() -> list[BackendEntry]:
    """Every backend name with its availability; broken plugins are listed with their error."""
    entries = [
        BackendEntry(name=name, source="built-in", availability=_safe_availability(cls))
        for name, cls in BUILTINS.items()
    ]
    for ep in _plugin_entry_points():
        if ep.name in BUILTINS:
            continue
        source = f"plugin {ep.dist.name if ep.dist else ep.value}"
        try:
            availability = _safe_availability(_load_plugin(ep))
        except BackendError as exc:
            availability = Availability(ok=False, reason=str(exc))
        entries.append(BackendEntry(name=ep.name, source=source, availability=availability))
    return entries


def backend_names() -> list[str]:
    """All registered backend names, built-ins first."""
    names = list(BUILTINS)
    names += [ep.name for ep in _plugin_entry_points() if ep.name not in BUILTINS]
    return names


def get_backend_class(name: str) -> type[Backend]:
    """The Backend class registered under `name`; raises BackendError naming the choices."""
    if name in BUILTINS:
        return BUILTINS[name]
    for ep in _plugin_entry_points():
        if ep.name == name:
            return _load_plugin(ep)
    available = [e.name for e in list_backends() if e.availability.ok]
    raise BackendError(
        f"unknown backend '{name}'. Registered backends: {', '.join(backend_names())}; "
        f"available on this machine: {', '.join(available) or 'none'}."
    )


def get_backend(name: str, index: int = 0) -> Backend:
    """A ready instance of the named backend; raises BackendError saying why it cannot run."""
    cls = get_backend_class(name)
    availability = _safe_availability(cls)
    if not availability.ok:
        raise BackendError(f"backend '{name}' is unavailable: {availability.explain()}")
    try:
        return cls(index)
    except BackendUnavailable as exc:
        raise BackendError(str(exc)) from exc
    except Exception as exc:
        raise BackendError(
            f"backend '{name}' failed to start: {type(exc).__name__}: {exc}"
        ) from exc
