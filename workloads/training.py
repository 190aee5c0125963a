"""Shared training-step mechanics: autocast, loss scaling for fp16, optimizer step."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from workloads.base import BuildContext, FidelityStep, Instance, PhaseHook, no_phase


def _steps_cleanly(
    cls: type[torch.optim.Optimizer], dtypes: set[torch.dtype], device: torch.device, **kw: Any
) -> bool:
    """Whether `cls(..., **kw)` can take one step on a throwaway parameter of each dtype: some
    runtimes (torch_npu with fused=True) construct the optimizer but lack the kernel, which
    shows only at step()."""
    try:
        for dtype in dtypes:
            probe = torch.zeros(2, device=device, dtype=dtype, requires_grad=True)
            probe.grad = torch.ones_like(probe)
            cls([probe], **kw).step()
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return False
    return True


def fast_optimizer(
    cls: type[torch.optim.Optimizer], params: Any, device: torch.device, **options: Any
) -> torch.optim.Optimizer:
    """`cls(params, **options)` in the fastest implementation the device has: fused kernels
    where torch has them for this device type and one probe step on a throwaway parameter
    succeeds, else foreach (same probe), else the per-parameter loop.

    What a tuned training script uses (nanoGPT asks for fused AdamW), so the training penalty
    measures the device rather than torch's slowest default (on CPU the default loop AdamW is
    ~10x slower than fused)."""
    from torch.utils import _foreach_utils

    params = list(params)
    tensors = [
        p for group in params for p in (group["params"] if isinstance(group, dict) else [group])
    ]
    dtypes = {p.dtype for p in tensors if isinstance(p, torch.Tensor)} or {torch.float32}
    for flag, supported in (
        ("fused", _foreach_utils._get_fused_kernels_supported_devices),
        ("foreach", _foreach_utils._get_foreach_kernels_supported_devices),
    ):
        if device.type in supported():
            if not _steps_cleanly(cls, dtypes, device, **options, **{flag: True}):
                continue
            try:
                return cls(params, **options, **{flag: True})
            except (RuntimeError, TypeError, ValueError):
                continue
    return cls(params, **options)


NORM_TYPES: tuple[type[torch.nn.Module], ...] = (
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
    torch.nn.RMSNorm,
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
)

PARAMETER_GROUPS: tuple[str, ...] = ("embeddings", "attention", "mlp", "conv", "norms", "head")
"""The kinds of layer whose gradient norms fidelity compares separately."""


def parameter_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The model's trainable parameters by kind of layer, each parameter in exactly one group.

    By module type and name: embeddings (nn.Embedding), norms (LayerNorm, GroupNorm, RMSNorm,
    BatchNorm, InstanceNorm), attention (any module under a name with an `attn`/`attention`
    component), head (the last module that owns parameters, when it is not a norm), conv
    (convolutions), mlp (everything else). A parameter shared by two modules (tied
    embeddings) belongs to the first. Groups with no parameters are left out."""
    owners = [
        (name, module)
        for name, module in model.named_modules()
        if any(p.requires_grad for p in module.parameters(recurse=False))
    ]
    head = owners[-1][1] if owners and not isinstance(owners[-1][1], NORM_TYPES) else None
    groups: dict[str, list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for name, module in owners:
        parts = name.lower().split(".")
        if isinstance(module, torch.nn.Embedding):
            group = "embeddings"
        elif isinstance(module, NORM_TYPES):
            group = "norms"
        elif any("attn" in part or "attention" in part for part in parts):
            group = "attention"
        elif module is head:
            group = "head"
        elif isinstance(module, torch.nn.modules.conv._ConvNd):
            group = "conv"
        else:
            group = "mlp"
        for parameter in module.parameters(recurse=False):
            if parameter.requires_grad and id(parameter) not in seen:
                seen.add(id(parameter))
                groups.setdefault(group, []).append(parameter)
    return {g: groups[g] for g in PARAMETER_GROUPS if g in groups}


OPTIMIZER_PASSES: dict[str, tuple[int, str]] = {
    "AdamW": (7, "reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq"),
    "Adam": (7, "reads param, grad, exp_avg, exp_avg_sq; writes param, exp_avg, exp_avg_sq"),
    "SGD+momentum": (5, "reads param, grad, momentum; writes param, momentum"),
    "SGD": (3, "reads param, grad; writes param"),
}
"""Full passes over the parameters' size one optimizer step makes in memory (state tensors
in the parameters' dtype), and which tensors they are."""


def optimizer_traffic(optimizer: torch.optim.Optimizer) -> tuple[float, str] | None:
    """Bytes `optimizer.step()` reads and writes (OPTIMIZER_PASSES x parameter bytes), and
    the count in words; None for an optimizer not in OPTIMIZER_PASSES."""
    name = type(optimizer).__name__
    if name == "SGD" and any(g.get("momentum", 0) for g in optimizer.param_groups):
        name = "SGD+momentum"
    if name not in OPTIMIZER_PASSES:
        return None
    passes, tensors = OPTIMIZER_PASSES[name]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    count = sum(p.numel() for p in params)
    size = sum(p.numel() * p.element_size() for p in params)
    width = size / count if count else 0
    return passes * size, f"{name}: {tensors} ({passes} x {width:g} B x {count} params)"


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
        self.groups = parameter_groups(model)
        self.group_norms: dict[str, float] = {}
        """Per-group gradient norms of the last step that computed its gradient norm."""

    def step(
        self, batch: object, grad_norm: bool = False, phase: PhaseHook = no_phase
    ) -> tuple[torch.Tensor, float | None]:
        """Forward, backward, optimizer step and zero_grad; returns the loss and, on request,
        the global gradient norm (unscaled) before the step; then `group_norms` holds each
        parameter group's norm (workloads.training.parameter_groups). Each part runs inside
        `phase(name)` (forward, backward, optimizer, zero_grad), which times nothing unless
        a phase timer hands its own hook."""
        self.model.train()
        with phase("forward"), self.ctx.autocast():
            loss = self.loss_fn(batch)
        with phase("backward"):
            self.scaler.scale(loss).backward()
        norm: float | None = None
        if grad_norm:
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])))
            self.group_norms = {
                group: float(
                    torch.linalg.vector_norm(torch.stack([p.grad.float().norm() for p in owned]))
                )
                for group, params in self.groups.items()
                if (owned := [p for p in params if p.grad is not None])
            }
        with phase("optimizer"):
            self.scaler.step(self.optimizer)
            self.scaler.update()
        with phase("zero_grad"):
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

    def optimizer_traffic(self) -> tuple[float, str] | None:
        return optimizer_traffic(self.optimizer)

    def stateful(self) -> dict[str, Any]:
        """The model, its optimizer and the Trainer's GradScaler (fp16 loss scale)."""
        return {"model": self.model, "optimizer": self.optimizer, "scaler": self.trainer.scaler}

    def staged_step(self, mode: str, phase: PhaseHook) -> Callable[[], None] | None:
        """The training step with its forward (loss included), backward, optimizer and
        zero_grad inside `phase(name)`. The batch already lives on the device, so there is
        no host-to-device phase."""
        if mode != "train":
            return None

        def train() -> None:
            self.last, _ = self.trainer.step(self.batch, phase=phase)

        return train

    def fidelity_step(self, index: int) -> FidelityStep:
        loss, norm = self.trainer.step(self.batch_at(index), grad_norm=True)
        return FidelityStep(
            loss=float(loss),
            grad_norm=float(norm or 0.0),
            group_grad_norms=self.trainer.group_norms,
        )
