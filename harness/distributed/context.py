"""The BuildContext of a distributed case: training modules run through DistributedDataParallel.

Workloads call `ctx.for_training(model)` for the module their training step uses; here that
hook returns a DDP wrapper (gradients all-reduced across ranks in backward), so any workload
that uses the hook trains data-parallel without knowing about distribution. Inference steps
use the plain model: replicas run independently.
"""

from __future__ import annotations

import torch
from pydantic import PrivateAttr
from torch.nn.parallel import DistributedDataParallel

from workloads.base import BuildContext


class DistributedBuildContext(BuildContext):
    """BuildContext whose `for_training` wraps a module in DDP (once per module)."""

    _wrapped: dict[int, torch.nn.Module] = PrivateAttr(default_factory=dict)

    def for_training(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` wrapped in DistributedDataParallel on this rank's device; the same wrapper
        for repeated calls with the same module. Requires an initialized process group."""
        key = id(model)
        if key not in self._wrapped:
            device = self.device
            on_accelerator = device.type != "cpu" and device.index is not None
            device_ids = [device.index] if on_accelerator else None
            self._wrapped[key] = DistributedDataParallel(model, device_ids=device_ids)
        return self._wrapped[key]

    def wrapped_modules(self) -> list[torch.nn.Module]:
        """The DDP wrappers `for_training` handed out so far."""
        return list(self._wrapped.values())
