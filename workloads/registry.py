"""Workload lookup: the built-ins plus installed plugins of the `bench.workloads` group."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from workloads.allreduce import AllReduceWorkload
from workloads.bandwidth import BandwidthWorkload
from workloads.base import Workload, WorkloadError
from workloads.convnet import ConvNetWorkload
from workloads.dit import DiTWorkload
from workloads.gpt import GPTWorkload
from workloads.llama import LlamaWorkload
from workloads.matmul import MatmulWorkload
from workloads.mlp import MLPWorkload
from workloads.moe import MoEWorkload

ENTRY_POINT_GROUP = "bench.workloads"
BUILTINS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in (
        MLPWorkload,
        ConvNetWorkload,
        GPTWorkload,
        LlamaWorkload,
        MoEWorkload,
        DiTWorkload,
        MatmulWorkload,
        BandwidthWorkload,
        AllReduceWorkload,
    )
}


def _plugins() -> dict[str, type[Workload]]:
    found: dict[str, type[Workload]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in BUILTINS:
            continue
        cls = _load(ep)
        if isinstance(cls, type) and issubclass(cls, Workload):
            found[ep.name] = cls
    return found


def _load(ep: EntryPoint) -> object:
    """The object an entry point names, or the exception its import raised. A plugin that
    raises anything on import (SystemExit included) never ends `bench`; Ctrl-C still does."""
    try:
        return ep.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return exc


def plugin_errors() -> dict[str, str]:
    """Workload plugins that failed to import or are not Workloads, with the reason."""
    errors: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = _load(ep)
        if isinstance(cls, BaseException):
            errors[ep.name] = f"failed to import {ep.value}: {type(cls).__name__}: {cls}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Workload)):
            errors[ep.name] = f"{ep.value} is not a subclass of workloads.base.Workload"
    return errors


def all_workloads() -> dict[str, type[Workload]]:
    """Every usable workload class by name, built-ins first."""
    return {**BUILTINS, **_plugins()}


def get_workload(name: str) -> Workload:
    """An instance of the named workload; raises WorkloadError naming the choices."""
    workloads = all_workloads()
    if name not in workloads:
        broken = plugin_errors()
        if name in broken:
            raise WorkloadError(f"workload plugin '{name}' {broken[name]}.")
        raise WorkloadError(f"unknown workload '{name}'; choose from: {', '.join(workloads)}.")
    return workloads[name]()
