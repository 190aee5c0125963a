"""A multi-layer perceptron that predicts the next byte of text from the bytes before it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from workloads.base import BuildContext, Instance, Work, Workload
from workloads.data import byte_windows
from workloads.training import TrainableInstance

VOCAB = 256


class MLP(nn.Module):
    """`layers` hidden Linear+GELU blocks between a byte-window input and 256 logits."""

    def __init__(self, context: int, hidden: int, layers: int) -> None:
        super().__init__()
        dims = [context, *([hidden] * layers)]
        blocks: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(dims):
            blocks += [nn.Linear(d_in, d_out), nn.GELU()]
        blocks.append(nn.Linear(dims[-1], VOCAB))
        self.net = nn.Sequential(*blocks)
        self.layer_shapes = list(zip(dims, [*dims[1:], VOCAB], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPInstance(TrainableInstance):
    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.context = params["context"]
        model = ctx.materialize(lambda: MLP(self.context, params["hidden"], params["layers"]))
        self.attach(model, torch.optim.AdamW, lr=params["lr"])
        self.layer_shapes = model.layer_shapes

    def batch_at(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = byte_windows(index, self.ctx.batch_size, self.context + 1)
        inputs = (windows[:, :-1].float() / 127.5 - 1.0).to(self.ctx.device)
        return inputs, windows[:, -1].to(self.ctx.device)

    def loss(self, batch: object) -> torch.Tensor:
        inputs, targets = batch  # type: ignore[misc]
        return nn.functional.cross_entropy(self.train_forward(inputs).float(), targets)

    def step(self, mode: str) -> Callable[[], None]:
        if mode == "infer":
            return self.infer_step(self.batch[0])
        return self.train_step()

    def flops(self, mode: str) -> float:
        forward = 2.0 * self.ctx.batch_size * sum(i * o for i, o in self.layer_shapes)
        return forward if mode == "infer" else 3.0 * forward

    def work(self, mode: str) -> Work:
        return Work(items=self.ctx.batch_size, unit="samples")


class MLPWorkload(Workload):
    name = "mlp"
    description = "MLP next-byte classifier (Linear+GELU), AdamW"
    version = "2"  # 2: inference weights in the case dtype
    modes = ("infer", "train")
    presets = {
        "tiny": {"batch": 16, "context": 32, "hidden": 64, "layers": 2, "lr": 1e-3},
        "small": {"batch": 64, "context": 256, "hidden": 1024, "layers": 4, "lr": 1e-3},
        "base": {"batch": 256, "context": 1024, "hidden": 4096, "layers": 8, "lr": 1e-3},
    }

    def build(self, ctx: BuildContext) -> Instance:
        return MLPInstance(ctx, ctx.params)
