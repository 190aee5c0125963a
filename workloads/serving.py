"""Serving interfaces: how a built instance answers requests, as opposed to timed batches.

Two kinds of request exist:
- an item request (an image to classify, an image to sample): `ItemServer.run(count)` does
  the device work of `count` requests batched together;
- a token request (a prompt of L_in tokens, then L_out generated tokens): `TokenServer`
  keeps one KV cache per request in a slot, `prefill(slot, ...)` runs a prompt and makes its
  first token, `decode(slots)` makes one more token for each listed slot in one batched
  forward (continuous batching: requests join and leave the batch between steps).

Servers only enqueue device work; the caller synchronizes the backend to know when the work
is done (that is when a serving system could return the result). No device is named here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

import torch

ServeKind = Literal["items", "tokens"]


class ItemServer(ABC):
    """Answers requests of one item each, up to `max_batch` per device call."""

    kind: ServeKind = "items"

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch

    @abstractmethod
    def run(self, count: int) -> None:
        """Process `count` (1..max_batch) requests as one batch."""


class ImageServer(ItemServer):
    """Requests that each carry one input of a fixed set (`inputs`, [max_batch, ...] on the
    device); a batch of `count` requests is `answer(inputs[:count])`."""

    def __init__(
        self, max_batch: int, answer: Callable[[torch.Tensor], None], inputs: torch.Tensor
    ) -> None:
        super().__init__(max_batch)
        self.answer = answer
        self.inputs = inputs

    def run(self, count: int) -> None:
        self.answer(self.inputs[:count])


class TokenServer(ABC):
    """Answers LLM requests: prompt prefill into a per-request cache slot, then decode steps
    batched over the slots in use. At most `max_batch` requests are in flight; one request
    holds at most `max_len` positions (prompt plus generated tokens)."""

    kind: ServeKind = "tokens"

    def __init__(self, max_batch: int, max_len: int) -> None:
        self.max_batch = max_batch
        self.max_len = max_len

    @abstractmethod
    def prefill(self, slot: int, prompt_len: int, request: int) -> None:
        """Run the prompt of `prompt_len` tokens of request number `request` into the empty
        cache of `slot` and produce its first output token."""

    @abstractmethod
    def decode(self, slots: list[int]) -> None:
        """Produce one more token for each request in `slots`, in one batched forward."""

    @abstractmethod
    def release(self, slot: int) -> None:
        """The request in `slot` is finished; the slot is free for the next one."""


Server = ItemServer | TokenServer
