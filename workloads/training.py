"""Shared training-step mechanics: autocast, loss scaling for fp16, optimizer step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from workloads.base import BuildContext


class Trainer:
    """One optimizer step of `loss_fn(batch)` on a model, in the case's dtype.

    fp16 uses a GradScaler (loss scaling); bf16 and fp32 do not need one.
    """

    def __init__(
        self,
        ctx: BuildContext,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[object], torch.Tensor],
    ) -> None:
        self.ctx = ctx
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.dtype == torch.float16)

    def step(self, batch: object, grad_norm: bool = False) -> tuple[torch.Tensor, float | None]:
        """Forward, backward, optimizer step and zero_grad; returns the loss and, on request,
        the global gradient norm (unscaled) before the step."""
        self.model.train()
        with self.ctx.autocast():
            loss = self.loss_fn(batch)
        self.scaler.scale(loss).backward()
        norm: float | None = None
        if grad_norm:
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), norm
