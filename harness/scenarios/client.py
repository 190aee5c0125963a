"""The streaming client of endpoint runs: one OpenAI-compatible request, streamed over SSE,
with a timestamp per chunk. aiohttp (asyncio, C-accelerated HTTP parsing, the client of
`vllm bench serve`): one event loop keeps hundreds of streams open without threads.

Server-sent events are read line by line: `:` lines are keep-alive comments, `data: [DONE]`
ends the stream, every other `data:` line is one JSON chunk. A chunk's content is
`choices[0].text` (completions) or `choices[0].delta.content` (chat); chunks without content
(a role-only first delta, empty deltas, the final `usage` chunk with no choices) are not
tokens. An `error` object inside the stream, a line that is not JSON, a dropped connection, a
refused one, an HTTP error status and a timeout each fail the request with its reason; the
caller goes on."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
from pydantic import BaseModel, Field

from harness.results.endpoint import Api, RequestOutcome


class Target(BaseModel):
    """Where and how requests go."""

    url: str
    """OpenAI base URL, e.g. http://127.0.0.1:8000/v1."""
    model: str
    api: Api = "completions"
    extras: bool = True
    """Send ignore_eos / min_tokens so that exactly max_tokens are produced."""
    timeout_s: float = 60.0

    @property
    def path(self) -> str:
        suffix = "chat/completions" if self.api == "chat" else "completions"
        return f"{self.url.rstrip('/')}/{suffix}"

    def payload(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The request body: greedy (temperature 0), streamed, usage requested."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.extras:
            body.update(ignore_eos=True, min_tokens=max_tokens)
        return body


class Streamed(BaseModel):
    """One request as the client saw it: host times (perf_counter seconds) and its outcome."""

    sent: float
    first_chunk: float | None = None
    """Any chunk (role-only included): what a naive client would stamp as the first token."""
    first: float | None = None
    """The first chunk with content: TTFT's stamp."""
    done: float
    token_times: list[float] = Field(default_factory=list)
    pieces: list[str] = Field(default_factory=list)
    """The content of each chunk (for the accuracy audit)."""
    outcome: RequestOutcome


class StreamFailure(Exception):
    """A request that failed; the message is its reason."""


def _content(chunk: dict[str, Any], api: Api) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0] or {}
    if api == "chat":
        return (choice.get("delta") or {}).get("content") or ""
    return choice.get("text") or ""


def _finish(chunk: dict[str, Any]) -> str | None:
    choices = chunk.get("choices") or []
    return (choices[0] or {}).get("finish_reason") if choices else None


def _error_detail(body: str) -> str:
    """The `error.message` of an OpenAI-style error body, else its first 80 characters."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:80]
    except (ValueError, AttributeError):
        pass
    return body[:80].strip()


def failure_reason(exc: BaseException) -> str:
    """A short, stable reason for a failed request (counted by reason in the results)."""
    if isinstance(exc, StreamFailure):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "connection dropped"
    if isinstance(exc, aiohttp.ClientOSError | ConnectionResetError):
        return "connection reset"
    return f"{type(exc).__name__}: {exc}"[:120]


async def stream_request(
    session: aiohttp.ClientSession, target: Target, prompt: str, max_tokens: int
) -> Streamed:
    """Send one request and read its stream to the end. Never raises for a failure of the
    request: it is returned as an outcome with `ok` False and a reason."""
    sent = time.perf_counter()
    state: dict[str, Any] = {"first_chunk": None, "first": None, "times": [], "pieces": []}
    outcome = RequestOutcome(ok=False, requested=max_tokens)
    try:
        await asyncio.wait_for(
            _read(session, target, prompt, max_tokens, state, outcome), target.timeout_s
        )
        outcome.ok = True
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        outcome.ok = False
        outcome.reason = failure_reason(exc)
    done = time.perf_counter()
    times: list[float] = state["times"]
    outcome.chunks = len(times)
    outcome.itl_s = [b - a for a, b in itertools.pairwise(times)]
    if outcome.usage_tokens is not None:
        outcome.produced, outcome.token_source = outcome.usage_tokens, "usage"
    else:
        outcome.produced, outcome.token_source = len(times), "chunks"
    outcome.stopped_early = outcome.ok and outcome.produced < max_tokens
    if outcome.ok and not times:
        outcome.ok, outcome.reason = False, "no content streamed"
    return Streamed(
        sent=sent,
        first_chunk=state["first_chunk"],
        first=state["first"],
        done=done,
        token_times=times,
        pieces=state["pieces"],
        outcome=outcome,
    )


async def _read(
    session: aiohttp.ClientSession,
    target: Target,
    prompt: str,
    max_tokens: int,
    state: dict[str, Any],
    outcome: RequestOutcome,
) -> None:
    async with session.post(target.path, json=target.payload(prompt, max_tokens)) as response:
        if response.status >= 400:
            detail = _error_detail(await response.text())
            raise StreamFailure(f"http {response.status}" + (f": {detail}" if detail else ""))
        finished = False
        async for raw in response.content:
            now = time.perf_counter()
            line = raw.decode("utf-8", errors="replace").strip()
            if not line or line.startswith(":"):
                continue  # event separator or keep-alive comment
            if not line.startswith("data:"):
                continue  # event:/id:/retry: fields carry nothing here
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                raise StreamFailure("malformed stream") from None
            if not isinstance(chunk, dict):
                raise StreamFailure("malformed stream")
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                raise StreamFailure(f"stream error: {message}"[:120])
            if state["first_chunk"] is None:
                state["first_chunk"] = now
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                if usage.get("completion_tokens") is not None:
                    outcome.usage_tokens = int(usage["completion_tokens"])
                if usage.get("prompt_tokens") is not None:
                    outcome.prompt_tokens = int(usage["prompt_tokens"])
            text = _content(chunk, target.api)
            if text:
                if state["first"] is None:
                    state["first"] = now
                    outcome.role_only_first = state["first_chunk"] != now
                state["times"].append(now)
                state["pieces"].append(text)
            reason = _finish(chunk)
            if reason:
                outcome.finish_reason = reason
                finished = True
        outcome.no_done = True
        if not finished:
            raise StreamFailure("stream ended before finish")


async def probe(session: aiohttp.ClientSession, target: Target) -> str:
    """The server's name from GET /models (`owned_by`) and the `server` header; raises
    aiohttp.ClientConnectorError when nothing listens."""
    names: list[str] = []
    async with session.get(f"{target.url.rstrip('/')}/models") as response:
        header = response.headers.get("server")
        if header:
            names.append(header)
        if response.status < 400:
            try:
                body = await response.json(content_type=None)
                for entry in body.get("data", []):
                    if entry.get("id") == target.model and entry.get("owned_by"):
                        names.insert(0, str(entry["owned_by"]))
            except (ValueError, AttributeError, aiohttp.ContentTypeError):
                pass
    return " / ".join(names)[:120]  # text from the server: bounded
