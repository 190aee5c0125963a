"""KV-cache serving gives the logits of the full forward."""

from __future__ import annotations

import torch

from tests.workloads.helpers import build


def test_prefill_then_decode_matches_the_full_forward() -> None:
    instance, params = build("gpt")
    model = instance.model.eval()  # type: ignore[attr-defined]
    tokens, _ = instance.batch  # type: ignore[attr-defined]
    prompt = 20
    with torch.inference_mode():
        full = model(tokens)
        cache = instance.cache()  # type: ignore[attr-defined]
        cache.length = 0
        logits = [model(tokens[:, :prompt], cache)]
        for position in range(prompt, tokens.shape[1]):
            logits.append(model(tokens[:, position : position + 1], cache))
    served = torch.cat(logits, dim=1)
    assert cache.length == params["seq_len"]
    torch.testing.assert_close(served, full, rtol=1e-4, atol=1e-4)


def test_a_chunk_after_a_cached_prefix_is_masked_causally() -> None:
    instance, _ = build("gpt")
    model = instance.model.eval()  # type: ignore[attr-defined]
    tokens, _ = instance.batch  # type: ignore[attr-defined]
    with torch.inference_mode():
        full = model(tokens)
        cache = instance.cache()  # type: ignore[attr-defined]
        cache.length = 0
        head = model(tokens[:, :10], cache)
        tail = model(tokens[:, 10:], cache)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, rtol=1e-4, atol=1e-4)


def test_decode_step_reuses_the_cache_of_length_cache_len() -> None:
    instance, params = build("gpt", cache_len="16")
    step = instance.step("decode")
    step()
    step()
    assert instance.cache().length == 17  # type: ignore[attr-defined]
    assert instance.last is not None and instance.last.shape[1] == 1
    metrics = instance.extra_metrics("decode", 0.01)
    assert metrics["time_per_output_token_s"] == 0.01
    assert metrics["tokens_per_s"] == params["batch"] / 0.01
