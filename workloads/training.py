"""Shared training-step mechanics: autocast, loss scaling for fp16, optimizer step."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from workloads.base import BuildContext, FidelityStep, Instance


def fast_optimizer(
    cls: type[torch.optim.Optimizer], params: Any, device: torch.device, **options: Any
) -> torch.optim.Optimizer:
    """`cls(params, **options)` in the fastest implementation the device has: fused kernels
    where torch has them for this device type, else foreach, else the per-parameter loop.

    What a tuned training script uses (nanoGPT asks for fused AdamW), so the training penalty
    measures the device rather than torch's slowest default (on CPU the default loop AdamW is
    ~10x slower than fused)."""
    from torch.utils import _foreach_utils

    params = list(params)
    for flag, supported in (
        ("fused", _foreach_utils._get_fused_kernels_supported_devices),
        ("foreach", _foreach_utils._get_foreach_kernels_supported_devices),
    ):
        if device.type in supported():
            try:
                return cls(params, **options, **{flag: True})
            except (RuntimeError, TypeError, ValueError):
                continue
    return cls(params, **options)


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


class TrainableInstance(Instance):
    """An Instance around one model that trains: the plain forward for inference, the forward
    a training step calls (through `ctx.for_training`, so DDP applies under --nproc > 1), its
    optimizer and Trainer, and the infer / train / fidelity steps every model workload shares.

    Subclasses set `self.ctx`, call `attach(model, optimizer)` once, and define `batch_at`
    (the index-th batch of real data, identical on every device) and `loss`.
    """

    ctx: BuildContext
    model: torch.nn.Module

    def attach(
        self, model: torch.nn.Module, optimizer: type[torch.optim.Optimizer], **options: Any
    ) -> None:
        """Wire the model into forwards, an `optimizer(**options)` in the device's fastest
        implementation (fast_optimizer), a Trainer and the first batch."""
        self.model = model
        self.forward = self.ctx.compiled(model)
        self.train_forward = self.ctx.compiled(self.ctx.for_training(model))
        self.optimizer = fast_optimizer(optimizer, model.parameters(), self.ctx.device, **options)
        self.trainer = Trainer(self.ctx, model, self.optimizer, self.loss)
        self.batch = self.batch_at(0)

    @abstractmethod
    def batch_at(self, index: int) -> Any:
        """The index-th batch of real data on the device (the same on every backend)."""

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:
        """The training loss of `batch`, computed through `self.train_forward`."""

    def infer_step(self, *inputs: Any) -> Callable[[], None]:
        """One inference forward of `inputs` in eval mode, under inference_mode and autocast."""

        def infer() -> None:
            self.model.eval()
            with torch.inference_mode(), self.ctx.autocast():
                self.last = self.forward(*inputs)

        return infer

    def serve_step(
        self, answer: Callable[[torch.Tensor], torch.Tensor]
    ) -> Callable[[torch.Tensor], None]:
        """`answer(inputs)` run like an inference step (eval mode, inference_mode, autocast),
        its output kept for the NaN/Inf check: what an ImageServer calls per batch."""

        def serve(inputs: torch.Tensor) -> None:
            self.model.eval()
            with torch.inference_mode(), self.ctx.autocast():
                self.last = answer(inputs)

        return serve

    def train_step(self) -> Callable[[], None]:
        """One full training step (forward, backward, optimizer) on the case's batch."""

        def train() -> None:
            self.last, _ = self.trainer.step(self.batch)

        return train

    def fidelity_step(self, index: int) -> FidelityStep:
        loss, norm = self.trainer.step(self.batch_at(index), grad_norm=True)
        return FidelityStep(loss=float(loss), grad_norm=float(norm or 0.0))
