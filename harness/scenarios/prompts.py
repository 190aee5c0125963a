"""What endpoint requests say: synthetic prompts of a given length (unique per request, so a
prefix cache finds nothing to reuse), or prompts from a JSONL dataset. Pure, seeded."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from harness.errors import BenchError
from harness.scenarios.requests import Lengths

_WORD_TEXT = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "body information back parent face others level office door health person art war history"
)
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())
"""Common English words: about one token each in the usual BPE vocabularies."""

CHARS_PER_TOKEN = 4
"""Dataset texts' token count estimate: characters / 4 (the server's `usage` replaces it)."""


class PromptedLengths(Lengths):
    """Lengths with the prompt text of each request."""

    prompts: list[str]


def synthetic_prompt(tokens: int, seed: int, stream: int, index: int) -> str:
    """About `tokens` tokens of seeded words, different for every (seed, stream, index)."""
    rng = np.random.default_rng([seed, stream, 3, index])
    picks = rng.integers(0, len(WORDS), size=max(1, tokens))
    return " ".join(WORDS[i] for i in picks)


def with_prompts(lengths: Lengths, seed: int, stream: int) -> PromptedLengths:
    """`lengths` with a unique synthetic prompt of each request's input length."""
    prompts = [synthetic_prompt(n, seed, stream, i) for i, n in enumerate(lengths.input_len)]
    return PromptedLengths(**lengths.model_dump(), prompts=prompts)


class Dataset(BaseModel):
    """Prompts read from a JSONL file, with their expected output lengths."""

    path: str
    sha256: str
    prompts: list[str]
    output_len: list[int]

    def draw(self, count: int, seed: int, stream: int, default_output: int) -> PromptedLengths:
        """`count` requests drawn from the file (seeded order, cycling when it is short)."""
        rng = np.random.default_rng([seed, stream, 4])
        order = rng.permutation(len(self.prompts))
        picks = [int(order[i % len(order)]) for i in range(count)]
        prompts = [self.prompts[i] for i in picks]
        return PromptedLengths(
            input_len=[estimate_tokens(p) for p in prompts],
            output_len=[self.output_len[i] or default_output for i in picks],
            prompts=prompts,
        )


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def _first_turns(conversation: list[object]) -> tuple[str, str] | None:
    """The first human turn and the reply after it (ShareGPT `from`/`value` or
    OpenAI-style `role`/`content`)."""
    turns = [t for t in conversation if isinstance(t, dict)]
    for i, turn in enumerate(turns):
        who = str(turn.get("from", turn.get("role", "")))
        if who in ("human", "user"):
            text = str(turn.get("value", turn.get("content", "")))
            reply = turns[i + 1] if i + 1 < len(turns) else {}
            return text, str(reply.get("value", reply.get("content", "")))
    return None


def load_dataset(path: str) -> Dataset:
    """Read `path`: one JSON object a line, with a `prompt` (and optionally `output_len`)
    or ShareGPT-style `conversations` (the first human turn is the prompt, the reply's
    length the output length). BenchError naming the file and line for bad input."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BenchError(f"--dataset {path}: cannot read it ({exc.strerror}).") from None
    prompts: list[str] = []
    outputs: list[int] = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise BenchError(f"--dataset {path}: line {number} is not JSON.") from None
        if isinstance(entry, dict) and isinstance(entry.get("prompt"), str):
            prompts.append(entry["prompt"])
            outputs.append(int(entry.get("output_len") or 0))
            continue
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        found = _first_turns(turns) if isinstance(turns, list) else None
        if found is None or not found[0]:
            raise BenchError(
                f"--dataset {path}: line {number} has neither a 'prompt' nor "
                "'conversations' with a human turn."
            )
        prompts.append(found[0])
        outputs.append(estimate_tokens(found[1]) if found[1] else 0)
    if not prompts:
        raise BenchError(f"--dataset {path}: no prompts in it.")
    return Dataset(
        path=path, sha256=hashlib.sha256(data).hexdigest(), prompts=prompts, output_len=outputs
    )
