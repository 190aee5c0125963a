"""Device work of known duration, and where an instance's tensors live: the kit's instruments."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch

MAX_LAUNCHES = 20_000
MIN_MATMUL_S = 1e-4
MAX_SIZE = 4096


class LongOp:
    """Independent n x n fp32 matmuls queued back to back on one device, lasting about
    `target_s` (n grows until one matmul takes >= 0.1 ms, so launches do not dominate).

    `wait()` reads one element back to the host, which blocks until the device has finished
    whatever `synchronize()` does: the checks use it as ground truth. They compare readings
    taken over the same interval, so a busy machine slows both sides alike.
    """

    def __init__(self, device: torch.device, target_s: float) -> None:
        self.device = device
        self.target_s = target_s
        self.size = 256
        self._allocate()
        per_matmul = self._per_matmul_s()
        while per_matmul < MIN_MATMUL_S and self.size < MAX_SIZE:
            self.size *= 2
            self._allocate()
            per_matmul = self._per_matmul_s()
        self.launches = max(1, min(MAX_LAUNCHES, math.ceil(target_s / per_matmul)))

    def _allocate(self) -> None:
        generator = torch.Generator().manual_seed(0)
        n = self.size
        self.a = (torch.randn(n, n, generator=generator) / math.sqrt(n)).to(self.device)
        self.b = (torch.randn(n, n, generator=generator) / math.sqrt(n)).to(self.device)
        self.out = torch.empty(n, n, device=self.device)

    def _per_matmul_s(self, count: int = 8) -> float:
        torch.mm(self.a, self.b, out=self.out)  # warm-up: first calls pay for setup
        self.wait()
        start = time.perf_counter()
        for _ in range(count):
            torch.mm(self.a, self.b, out=self.out)
        self.wait()
        return (time.perf_counter() - start) / count

    def run(self) -> None:
        """Queue the op; returns as soon as the device accepts it (maybe before it ends).
        Queueing stops early after 4 x target_s of host time, which bounds the op on a
        synchronous device whose speed swings (a busy CPU) and never triggers on an
        asynchronous one, where queueing is fast."""
        deadline = time.perf_counter() + 4 * self.target_s
        for _ in range(self.launches):
            torch.mm(self.a, self.b, out=self.out)
            if time.perf_counter() > deadline:
                break

    def wait(self) -> None:
        """Block until the op's result exists, by copying one element to the host."""
        self.out[0, 0].item()


def same_device(tensor_device: torch.device, device: torch.device) -> bool:
    """Whether a tensor on `tensor_device` is on `device` (cpu and cpu:0 are the same)."""
    return tensor_device.type == device.type and (tensor_device.index or 0) == (device.index or 0)


def reachable_tensors(obj: object) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors an instance exposes: parameters and buffers of its nn.Module attributes, its
    tensor attributes, and tensors inside tuple, list and dict attributes (two levels)."""
    for name, value in vars(obj).items():
        yield from _tensors_in(name, value, depth=2)


def _tensors_in(path: str, value: object, depth: int) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, torch.nn.Module):
        for name, tensor in value.named_parameters():
            yield f"{path}.{name}", tensor
        for name, tensor in value.named_buffers():
            yield f"{path}.{name}", tensor
    elif depth > 0 and isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _tensors_in(f"{path}[{i}]", item, depth - 1)
    elif depth > 0 and isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(f"{path}[{key!r}]", item, depth - 1)
