"""What the scenarios issue: request lengths and arrival times, drawn from seeded generators
so that the same seed gives the same requests and the same schedule. Pure numpy."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from harness.results.config import LengthSpec


class Lengths(BaseModel):
    """Prompt and output tokens of each request (LLMs)."""

    input_len: list[int]
    output_len: list[int]


def resolved(spec: LengthSpec, seq_len: int) -> LengthSpec:
    """`spec` with 0 lengths replaced by the defaults for `seq_len`: prompts a quarter of it,
    outputs an eighth (each at least 1)."""
    return spec.model_copy(
        update={
            "input_len": spec.input_len or max(1, seq_len // 4),
            "output_len": spec.output_len or max(1, seq_len // 8),
        }
    )


def _draw(kind: str, value: int, sigma: float, count: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "fixed":
        return np.full(count, value, dtype=np.int64)
    if kind == "uniform":
        low, high = max(1, value // 2), max(1, (3 * value) // 2)
        return rng.integers(low, high + 1, size=count)
    drawn = np.rint(value * np.exp(sigma * rng.standard_normal(count)))
    return np.clip(drawn, 1, 4 * value).astype(np.int64)


def draw_lengths(spec: LengthSpec, seq_len: int, count: int, seed: int, stream: int) -> Lengths:
    """`count` requests' lengths from `spec` (resolved for `seq_len`), identical for the same
    (seed, stream). The prompt is clipped to seq_len - 1 and the output to what then fits, so
    that every request fits one KV cache of seq_len positions."""
    spec = resolved(spec, seq_len)
    rng = np.random.default_rng([seed, stream, 1])
    inputs = np.minimum(_draw(spec.kind, spec.input_len, spec.sigma, count, rng), seq_len - 1)
    outputs = _draw(spec.kind, spec.output_len, spec.sigma, count, rng)
    outputs = np.maximum(np.minimum(outputs, seq_len - inputs), 1)
    return Lengths(input_len=inputs.tolist(), output_len=outputs.tolist())


def poisson_arrivals(rate: float, count: int, seed: int, stream: int) -> list[float]:
    """Arrival times (seconds from the start) of `count` requests of a Poisson process of
    `rate` per second: exponential gaps, the first request at its first gap. Identical for the
    same (seed, stream, rate, count)."""
    if rate <= 0:
        raise ValueError(f"an arrival rate must be positive, got {rate}")
    rng = np.random.default_rng([seed, stream, 2])
    return np.cumsum(rng.exponential(1.0 / rate, size=count)).tolist()


def gamma_arrivals(
    rate: float, count: int, seed: int, stream: int, burstiness: float = 1.0
) -> list[float]:
    """Arrival times of `count` requests at mean `rate` per second with gamma gaps of shape
    `burstiness` (mean 1 / rate; burstiness 1 is exactly `poisson_arrivals`, below 1 burstier,
    above 1 more regular), as `vllm bench serve --burstiness` draws them."""
    if burstiness == 1.0:
        return poisson_arrivals(rate, count, seed, stream)
    if rate <= 0 or burstiness <= 0:
        raise ValueError(f"rate and burstiness must be positive, got {rate}, {burstiness}")
    rng = np.random.default_rng([seed, stream, 2])
    gaps = rng.gamma(burstiness, 1.0 / (rate * burstiness), size=count)
    return np.cumsum(gaps).tolist()
