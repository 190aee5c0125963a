"""Real data built from what ships with Python: byte-level text, identical on every machine
with the same Python sources. Nothing is downloaded."""

from __future__ import annotations

import functools
import inspect

import torch

# Stable, documentation-heavy stdlib modules; their source text is the corpus.
_CORPUS_MODULES = ("textwrap", "difflib", "fractions", "heapq", "bisect", "colorsys")


@functools.cache
def text_corpus() -> bytes:
    """UTF-8 bytes of a fixed set of Python standard-library sources."""
    import importlib

    parts = [inspect.getsource(importlib.import_module(name)) for name in _CORPUS_MODULES]
    return "\n".join(parts).encode("utf-8")


def byte_windows(index: int, batch: int, length: int) -> torch.Tensor:
    """The index-th batch of `batch` byte windows of `length` from the corpus, as int64 (CPU).

    Windows are laid out deterministically so that every backend sees the same batches.
    """
    data = torch.frombuffer(bytearray(text_corpus()), dtype=torch.uint8)
    span = data.numel() - length - 1
    generator = torch.Generator().manual_seed(1_000_003 * index + 17)
    starts = torch.randint(0, span, (batch,), generator=generator)
    offsets = torch.arange(length)
    return data[starts[:, None] + offsets[None, :]].long()
