"""The gpt traffic model at the real presets, where prompt_len and cache_len are 0
("derive from seq_len"), against a count made by hand from the preset shapes."""

from __future__ import annotations

import pytest

from tests.workloads.helpers import build

# (preset, batch, seq_len, d_model, n_layer, vocab): the shapes of GPTWorkload.presets.
SHAPES = [
    ("tiny", 2, 32, 32, 2, 256),
    ("small", 4, 128, 128, 4, 256),
    ("base", 8, 1024, 768, 12, 50304),
]


def hand_count(mode: str, dtype: str, b: int, t: int, d: int, layers: int, vocab: int) -> int:
    """Weights once (in the case dtype, as an inference case builds them), the KV cache
    attended over, 16*d activation elements per new token per layer, and one logits row per
    sequence."""
    a = {"fp32": 4, "bf16": 2}[dtype]
    n = 12 * layers * d * d + vocab * d  # tied head
    weights = n * a
    if mode == "prefill":  # the whole window is the prompt, written into the cache
        new, positions = t, t
    else:  # one token after a cache of seq_len - 1
        new, positions = 1, t
    kv = 2 * layers * b * positions * d
    act = b * new * layers * 16 * d + 2 * b * vocab
    return weights + (kv + act) * a


@pytest.mark.parametrize(("preset", "b", "t", "d", "layers", "vocab"), SHAPES)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_prefill_and_decode_bytes_use_the_derived_lengths(
    preset: str, b: int, t: int, d: int, layers: int, vocab: int, dtype: str
) -> None:
    instance, params = build("gpt", dtype=dtype, preset=preset)
    assert params["prompt_len"] == 0 and params["cache_len"] == 0
    for mode in ("prefill", "decode"):
        assert instance.bytes_moved(mode) == hand_count(mode, dtype, b, t, d, layers, vocab)
    assert instance.bytes_moved("infer") is None


def test_small_prefill_sits_far_below_the_old_misplaced_intensity() -> None:
    """With the real 128-token prompt, small prefill moves its KV cache and activations:
    its intensity is a fraction of the ~286 FLOP/byte that a 0-token prompt implied."""
    instance, _ = build("gpt", preset="small")
    intensity = instance.flops("prefill") / instance.bytes_moved("prefill")
    assert intensity < 150
