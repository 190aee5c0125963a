"""The part a vendor writes: a subclass of AcceleratorBackend naming its device module.

A real vendor changes three things: `load_runtime` imports its torch extension (e.g.
`torch_mydev`), `device_type` is the torch device type that extension registers, and
`device_module` is left to its default, `torch.get_device_module(device_type)`. Everything
else (events, synchronize, memory, autocast, describe, seeding) is the generic path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from backends.accelerator import AcceleratorBackend


class HostDevBackend(AcceleratorBackend):
    name = "hostdev"
    device_type = "cpu"  # where tensors live; a vendor: its device type, e.g. "npu", "mlu"
    dist_backend = "gloo"  # a vendor: its collective library, e.g. "hccl", "cncl"
    supported_dtypes = ("fp32", "bf16", "fp16")
    install_hint = "pip install ./examples/vendor-plugin (from the accelbench repository)."

    @classmethod
    def load_runtime(cls) -> None:
        """A vendor imports its torch extension here; a failure becomes Availability(ok=False)."""
        importlib.import_module("accelbench_hostdev.runtime")

    @classmethod
    def device_module(cls) -> ModuleType:
        """A vendor keeps the default (torch.get_device_module); hostdev has no torch device
        type of its own, so it hands over its stand-in module."""
        return importlib.import_module("accelbench_hostdev.runtime")

    def runtime_versions(self) -> dict[str, str]:
        from accelbench_hostdev import __version__

        return {**super().runtime_versions(), "hostdev": __version__}

    def settings(self) -> dict[str, str]:
        """A vendor lists the switches that change its numerics or speed (precision modes,
        compile modes, queueing, its environment variables); every run records them and
        `bench compare` names the ones that differ. hostdev runs on host threads."""
        import torch

        return {**super().settings(), "hostdev.threads": str(torch.get_num_threads())}
