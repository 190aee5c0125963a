"""A deterministic labelled image set built in code: class-dependent procedural patterns
(oriented colour gratings) plus noise from a seeded generator. Nothing is downloaded; the
index-th batch is identical on every machine."""

from __future__ import annotations

import math

import torch


def labelled_images(
    index: int, batch: int, size: int, classes: int, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """The index-th batch: images [batch, channels, size, size] in [-1, 1] (float32, CPU)
    and labels [batch] (int64). Class c is a grating whose orientation, frequency and
    per-channel phase depend on c; each image gets its own offset and noise."""
    generator = torch.Generator().manual_seed(2_000_029 * index + 31)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    c = labels.double()[:, None, None, None]
    angle = math.pi * c / classes
    frequency = 2.0 + (c % 5)
    channel = torch.arange(channels, dtype=torch.float64)[None, :, None, None]
    phase = 2.0 * math.pi * ((c * 0.37 + channel * 0.21) % 1.0)
    offset = torch.rand(batch, 1, 1, 1, generator=generator, dtype=torch.float64) * 2 * math.pi
    grid = torch.linspace(0.0, 1.0, size, dtype=torch.float64)
    y, x = grid[None, None, :, None], grid[None, None, None, :]
    along = x * torch.cos(angle) + y * torch.sin(angle)
    pattern = torch.sin(2.0 * math.pi * frequency * along + phase + offset)
    noise = torch.randn(batch, channels, size, size, generator=generator, dtype=torch.float64)
    images = (0.7 * pattern + 0.3 * noise).clamp(-1.0, 1.0)
    return images.float(), labels
