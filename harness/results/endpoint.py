"""What an endpoint run is configured with and what it stores beside the scenario points:
the server, the client's own limit, per-request outcomes, goodput, cost and the audits of the
timed run (docs/scenarios.md, "Against a serving endpoint")."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Api = Literal["completions", "chat"]
TokenSource = Literal["usage", "chunks"]


class EndpointSettings(BaseModel):
    """`bench run --scenario ... --endpoint URL`: the scenarios against OpenAI-compatible
    servers instead of the in-process engine."""

    urls: list[str]
    """OpenAI base URLs as clients take them, e.g. http://host:8000/v1."""
    labels: list[str] = Field(default_factory=list)
    """One report label per URL; empty means the server's name and model."""
    model: str = Field("", validate_default=True)
    """The model name requests ask for (required)."""
    api: Api = "completions"
    concurrency: list[int] = Field(default_factory=list)
    """Closed-loop points at these fixed concurrencies (the Pareto sweep)."""
    burstiness: float = Field(1.0, gt=0)
    """Shape of the gamma inter-arrival gaps: 1 is Poisson, below 1 burstier."""
    dataset: str | None = None
    """A JSONL file of prompts instead of synthetic ones."""
    price_per_hour: float | None = Field(None, gt=0)
    """Price of the device(s) behind the endpoint ($/h): gives $ per million output tokens."""
    devices: int = Field(1, ge=1)
    """Devices behind the endpoint: throughput per device divides by it."""
    e2e_s: float | None = Field(None, gt=0)
    """A per-request end-to-end latency SLO for goodput (TTFT and TPOT always count)."""
    request_timeout_s: float = Field(60.0, gt=0)
    """A request that has not finished by then fails with reason `timeout`."""
    max_in_flight: int = Field(512, ge=1)
    """Most requests the client keeps open at once (open-loop server points)."""
    audits: bool = True
    seq_len: int = Field(2048, ge=2)
    """Context the synthetic lengths are clipped to (the in-process presets' seq_len role)."""

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("--endpoint expects at least one URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"--endpoint expects http(s) URLs like http://host:8000/v1; got {url}"
                )
        return urls

    @field_validator("model")
    @classmethod
    def _model_named(cls, model: str) -> str:
        if not model.strip():
            raise ValueError("--endpoint needs --model NAME (the model the server serves)")
        return model

    @field_validator("dataset")
    @classmethod
    def _dataset_exists(cls, dataset: str | None) -> str | None:
        if dataset is not None and not Path(dataset).is_file():
            raise ValueError(f"--dataset {dataset}: no such file")
        return dataset

    @model_validator(mode="after")
    def _one_label_per_url(self) -> EndpointSettings:
        if self.labels and len(self.labels) != len(self.urls):
            raise ValueError(
                f"--label names each endpoint: {len(self.urls)} URL(s) but "
                f"{len(self.labels)} label(s)"
            )
        return self


class RequestOutcome(BaseModel):
    """One request's result beyond its timings."""

    ok: bool
    reason: str = ""
    """Why it failed: refused, reset, timeout, http 503, malformed stream, stream error..."""
    requested: int
    produced: int = 0
    token_source: TokenSource = "chunks"
    chunks: int = 0
    """Streamed chunks carrying content."""
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    stopped_early: bool = False
    role_only_first: bool = False
    """The first chunk carried no content (a role-only or empty delta)."""
    no_done: bool = False
    """The stream ended without the [DONE] sentinel."""
    itl_s: list[float] = Field(default_factory=list)
    """Gaps between content chunks (inter-token latencies when one token per chunk)."""
    send_lag_s: float = 0.0
    """How late the client sent the request after its scheduled arrival."""


class EndpointPoint(BaseModel):
    """The endpoint side of one ScenarioPoint: the point's percentiles cover the requests
    that succeeded; failures count here and against goodput."""

    issued: int
    failed: int
    errors: dict[str, int] = Field(default_factory=dict)
    """Failure reason -> count."""
    error_rate: float
    outcomes: list[RequestOutcome] = Field(default_factory=list)
    """Every issued request, in request order (failed ones included)."""
    slo_fraction: float
    """Issued requests meeting every per-request SLO (failed ones do not)."""
    goodput: float
    """Requests/s meeting every per-request SLO."""
    concurrency: int | None = None
    """Closed-loop points: requests kept in flight."""
    burstiness: float = 1.0
    interactivity: float | None = None
    """Tokens/s per user: 1 / median TPOT."""
    tokens_per_s_per_device: float | None = None
    usd_per_million_tokens: float | None = None
    client_limited: bool = False
    """Within 2x of the client's own measured limit: not a figure of the server."""


class Calibration(BaseModel):
    """The client's own limit against a null local endpoint (answers at once)."""

    requests_per_s: float
    tokens_per_s: float
    overhead_s: float
    """Median request latency at concurrency 1 against the null endpoint."""
    concurrency: int
    requests: int
    tokens_per_request: int


class AccuracyAudit(BaseModel):
    """Timed-run outputs against the same prompts served one at a time (temperature 0)."""

    sample: int
    compared: int
    mismatches: int
    mismatch_rate: float
    first_difference: list[int | None] = Field(default_factory=list)
    """Per compared prompt: the first differing chunk (token) position, None when equal."""


class TokenAudit(BaseModel):
    """Streamed chunks vs `usage` vs the requested length, over every measured request."""

    requests: int
    usage_reported: int
    chunks_differ_from_usage: int
    short_of_requested: int
    role_only_first_chunks: int
    no_done: int
    violations: list[str] = Field(default_factory=list)


class RepeatAudit(BaseModel):
    """One prompt sent many times against unique prompts of the same lengths, one at a time."""

    requests: int
    ttft_ratio: float
    """Median TTFT of the repeated prompt / of the unique prompts (below 1: caching)."""
    latency_ratio: float
    cached: bool
    """ttft_ratio below CACHE_RATIO: repeated prompts are served faster."""


class Audits(BaseModel):
    accuracy: AccuracyAudit | None = None
    tokens: TokenAudit | None = None
    repeated: RepeatAudit | None = None


class EndpointInfo(BaseModel):
    """The server a ScenarioResult measured and what the run learned about it."""

    url: str
    label: str
    model: str
    api: Api
    server: str = ""
    """From /v1/models `owned_by` and the `server` response header, where given."""
    extras_accepted: bool = True
    """Whether the server took ignore_eos / min_tokens (else only max_tokens was sent)."""
    dataset: str | None = None
    dataset_sha256: str | None = None
    calibration: Calibration | None = None
    price_per_hour: float | None = None
    usd_per_million_at_max_rate: float | None = None
    audits: Audits = Field(default_factory=Audits)
    client_note: str = ""
