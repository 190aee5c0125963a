"""A ResNet-style convolutional classifier (basic or bottleneck residual blocks) on the
procedural labelled image set, trained with SGD momentum and cross-entropy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads import flops
from workloads.base import (
    BuildContext,
    Instance,
    Work,
    Workload,
    WorkloadError,
    mode_error,
)
from workloads.images import labelled_images
from workloads.serving import ImageServer, ItemServer
from workloads.training import TrainableInstance

BLOCKS = ("basic", "bottleneck")
IMAGENET_STEM_MIN_SIZE = 128
"""Images at least this large get the ImageNet stem (7x7/2 conv + 3x3/2 max-pool); smaller
ones the CIFAR stem (3x3/1 conv), as usual for ResNets at 32x32."""


class ConvCounter:
    """Collects the analytic FLOPs of every convolution while the network is built."""

    def __init__(self) -> None:
        self.forward = 0.0
        self.first = 0.0

    def conv(self, c_in: int, c_out: int, kernel: int, stride: int, size: int) -> nn.Conv2d:
        """A bias-free convolution with `same`-style padding; records its FLOPs per image
        for an input of `size` x `size`."""
        out = (size + 2 * (kernel // 2) - kernel) // stride + 1
        counted = flops.conv2d(c_in, c_out, kernel, out, out)
        if self.forward == 0.0:
            self.first = counted
        self.forward += counted
        return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)


class Residual(nn.Module):
    """Basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) block with a
    projection shortcut when the shape changes."""

    def __init__(
        self, counter: ConvCounter, kind: str, c_in: int, width: int, stride: int, size: int
    ) -> None:
        super().__init__()
        self.c_out = width * (4 if kind == "bottleneck" else 1)
        out_size = (size - 1) // stride + 1
        if kind == "basic":
            layers = [
                counter.conv(c_in, width, 3, stride, size),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                counter.conv(width, width, 3, 1, out_size),
                nn.BatchNorm2d(width),
            ]
        else:
            layers = [
                counter.conv(c_in, width, 1, 1, size),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                counter.conv(width, width, 3, stride, size),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                counter.conv(width, self.c_out, 1, 1, out_size),
                nn.BatchNorm2d(self.c_out),
            ]
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != self.c_out:
            self.shortcut = nn.Sequential(
                counter.conv(c_in, self.c_out, 1, stride, size), nn.BatchNorm2d(self.c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def resnet_init(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: convolutions kaiming normal (fan_out, relu),
    batch norms weight 1 and bias 0, the classifier PyTorch's linear default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ResNet(nn.Module):
    """Stem, stages of residual blocks (widths width * 2^i, stride 2 from the second stage),
    global average pooling and a linear classifier, initialised as torchvision's ResNet
    (`resnet_init`). `flops_forward` is per image."""

    def __init__(self, kind: str, stages: list[int], width: int, size: int, classes: int) -> None:
        super().__init__()
        counter = ConvCounter()
        if size >= IMAGENET_STEM_MIN_SIZE:
            stem_conv = counter.conv(3, width, 7, 2, size)
            size = (size - 1) // 2 + 1
            self.stem = nn.Sequential(
                stem_conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            )
            size = (size - 1) // 2 + 1
        else:
            self.stem = nn.Sequential(
                counter.conv(3, width, 3, 1, size), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
        blocks: list[nn.Module] = []
        c_in = width
        for i, count in enumerate(stages):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                block = Residual(counter, kind, c_in, width * 2**i, stride, size)
                size = (size - 1) // stride + 1
                c_in = block.c_out
                blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, classes)
        self.flops_forward = counter.forward + flops.linear(1, c_in, classes)
        self.flops_first = counter.first
        resnet_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def parse_stages(text: str) -> list[int]:
    """'3-4-6-3' -> [3, 4, 6, 3]; WorkloadError for anything else."""
    try:
        stages = [int(part) for part in text.split("-")]
    except ValueError:
        stages = []
    if not stages or any(s <= 0 for s in stages):
        raise WorkloadError(
            f"convnet: stages must be positive block counts joined by '-' (e.g. 3-4-6-3), "
            f"got '{text}'."
        )
    return stages


class ConvNetInstance(TrainableInstance):
    model: ResNet

    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.p = params
        self.memory_format = (
            torch.channels_last if params["channels_last"] else torch.contiguous_format
        )
        model = ctx.materialize(
            lambda: ResNet(
                params["block"],
                parse_stages(params["stages"]),
                params["width"],
                params["image_size"],
                params["classes"],
            )
        )
        model = model.to(memory_format=self.memory_format)
        self.attach(
            model,
            torch.optim.SGD,
            lr=params["lr"],
            momentum=0.9,
            weight_decay=5e-5,
        )

    def batch_at(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p
        images, labels = labelled_images(index, self.ctx.batch_size, p["image_size"], p["classes"])
        images = images.to(self.ctx.device).contiguous(memory_format=self.memory_format)
        return images, labels.to(self.ctx.device)

    def loss(self, batch: object) -> torch.Tensor:
        images, labels = batch  # type: ignore[misc]
        return F.cross_entropy(self.train_forward(images).float(), labels)

    def step(self, mode: str) -> Callable[[], None]:
        if mode == "infer":
            return self.infer_step(self.batch[0])
        if mode == "train":
            return self.train_step()
        raise mode_error("convnet", mode, ConvNetWorkload.modes)

    def server(self, max_batch: int) -> ItemServer:
        """One request = one image to classify; a batch of requests is one forward."""
        p = self.p
        images, _ = labelled_images(5, max_batch, p["image_size"], p["classes"])
        images = images.contiguous(memory_format=self.memory_format)
        return ImageServer(max_batch, self.serve_step(self.forward), images.to(self.ctx.device))

    def flops(self, mode: str) -> float:
        batch = self.ctx.batch_size
        forward = batch * self.model.flops_forward
        if mode == "infer":
            return forward
        return flops.training(forward, data_fed=batch * self.model.flops_first)

    def work(self, mode: str) -> Work:
        return Work(items=self.ctx.batch_size, unit="images")


class ConvNetWorkload(Workload):
    name = "convnet"
    version = "3"  # 2: torchvision's ResNet initialisation; 3: inference weights in the case dtype
    description = "ResNet-style classifier (basic/bottleneck blocks) on procedural images, SGD"
    modes = ("infer", "train")
    presets = {
        "tiny": {
            "batch": 4,
            "image_size": 32,
            "block": "basic",
            "stages": "1-1",
            "width": 8,
            "classes": 10,
            "channels_last": False,
            "lr": 0.05,
        },
        "small": {
            "batch": 16,
            "image_size": 32,
            "block": "basic",
            "stages": "1-1-1",
            "width": 16,
            "classes": 10,
            "channels_last": False,
            "lr": 0.05,
        },
        "base": {  # ResNet-50 shape
            "batch": 64,
            "image_size": 224,
            "block": "bottleneck",
            "stages": "3-4-6-3",
            "width": 64,
            "classes": 1000,
            "channels_last": True,
            "lr": 0.1,
        },
    }

    def validate_params(self, params: dict[str, Any]) -> None:
        super().validate_params(params)
        if params["block"] not in BLOCKS:
            raise WorkloadError(
                f"convnet: block must be one of {', '.join(BLOCKS)}, got '{params['block']}'."
            )
        stages = parse_stages(params["stages"])
        reduction = 2 ** (len(stages) - 1) * (4 if params["image_size"] >= 128 else 1)
        if params["image_size"] < reduction:
            raise WorkloadError(
                f"convnet: image_size {params['image_size']} is too small for {len(stages)} "
                f"stages (needs >= {reduction})."
            )

    def build(self, ctx: BuildContext) -> Instance:
        return ConvNetInstance(ctx, ctx.params)
