"""fast_optimizer probes one step before choosing an implementation: torch_npu constructs
AdamW(fused=True) but a missing fused kernel shows only at step()."""

from __future__ import annotations

from typing import Any

import torch

from workloads.training import fast_optimizer


class FusedKernelMissing(torch.optim.AdamW):
    """AdamW as on a runtime that accepts fused=True but has no fused kernel to run."""

    def step(self, closure: Any = None) -> Any:
        if self.defaults.get("fused"):
            raise RuntimeError("fused AdamW kernel is not implemented for this device")
        return super().step(closure)


def test_a_fused_kernel_that_fails_at_step_is_not_chosen() -> None:
    layer = torch.nn.Linear(4, 4)
    optimizer = fast_optimizer(FusedKernelMissing, layer.parameters(), torch.device("cpu"), lr=0.1)
    assert not optimizer.defaults.get("fused")
    layer(torch.randn(2, 4)).sum().backward()
    optimizer.step()  # the chosen implementation steps


def test_a_working_fused_kernel_is_still_chosen() -> None:
    layer = torch.nn.Linear(4, 4)
    optimizer = fast_optimizer(torch.optim.AdamW, layer.parameters(), torch.device("cpu"), lr=0.1)
    assert optimizer.defaults.get("fused")
