"""Workload parameters are validated with messages that say what is wrong."""

from __future__ import annotations

import pytest

from workloads.base import WorkloadError
from workloads.registry import get_workload

BAD = [
    ("gpt", {"d_model": "30", "n_head": "4"}, "d_model (30) must be divisible by n_head (4)"),
    ("gpt", {"vocab": "100"}, "vocab must be >= 256 (the data is byte-level)"),
    ("gpt", {"prompt_len": "64"}, "prompt_len (64) must be <= seq_len (32)"),
    ("gpt", {"cache_len": "32"}, "cache_len (32) must be in 1..seq_len - 1 (31)"),
    ("gpt", {"seq_len": "1"}, "cache_len (0) must be in 1..seq_len - 1 (0)"),
    ("gpt", {"cache_len": "-2"}, "cache_len must be >= 0 (0: from seq_len)"),
    ("gpt", {"seq_len": "0"}, "gpt.seq_len must be > 0"),
    ("gpt", {"tied": "maybe"}, "gpt.tied expects a bool"),
    ("dit", {"image_size": "18"}, "image_size (18) must be divisible by patch (4)"),
    ("dit", {"n_head": "3"}, "d_model (32) must be divisible by n_head (3)"),
    ("convnet", {"block": "dense"}, "block must be one of basic, bottleneck"),
    ("convnet", {"stages": "2-x"}, "stages must be positive block counts joined by '-'"),
    ("convnet", {"stages": "1-1-1-1-1-1", "image_size": "16"}, "image_size 16 is too small"),
    ("matmul", {"m": "-1"}, "m must be >= 0 (0 means n)"),
    ("matmul", {"n": "0"}, "matmul.n must be > 0"),
    ("matmul", {"sweep": "true", "m": "64"}, "either sweep=true or a shape"),
    ("bandwidth", {"size_mib": "0"}, "bandwidth.size_mib must be > 0"),
    ("llama", {"n_kv_head": "3"}, "n_head (4) must be a multiple of n_kv_head (3)"),
    (
        "llama",
        {"d_model": "36", "n_head": "12", "n_kv_head": "4"},
        "head size d_model / n_head (3) must be even",
    ),
    ("llama", {"prompt_len": "40"}, "llama: prompt_len (40) must be <= seq_len (32)"),
    ("moe", {"top_k": "9"}, "top_k (9) must be <= n_expert (8)"),
    ("moe", {"first_dense": "3"}, "first_dense (3) must be <= n_layer (2)"),
    ("moe", {"capacity_factor": "-1"}, "moe: capacity_factor must be >= 0, got -1.0"),
    ("moe", {"n_expert": "0"}, "moe.n_expert must be > 0"),
    ("bandwidth", {"size": "3"}, "has no parameter 'size'; its parameters are: batch, size_mib"),
]


@pytest.mark.parametrize(("name", "overrides", "message"), BAD)
def test_bad_parameters_are_refused_with_a_clear_message(
    name: str, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(WorkloadError) as info:
        get_workload(name).resolve_params("tiny", overrides)
    assert message in str(info.value)


def test_gpt_serving_lengths_follow_seq_len_unless_given() -> None:
    from workloads.gpt import serving_lengths

    gpt = get_workload("gpt")
    assert serving_lengths(gpt.resolve_params("small", {"seq_len": "64"})) == (64, 63)
    given = gpt.resolve_params("tiny", {"prompt_len": "8", "cache_len": "5"})
    assert serving_lengths(given) == (8, 5)


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
@pytest.mark.parametrize(
    "name", ["mlp", "convnet", "gpt", "dit", "matmul", "bandwidth", "llama", "moe"]
)
def test_every_preset_is_valid(name: str, preset: str) -> None:
    params = get_workload(name).resolve_params(preset, {})
    assert params["batch"] > 0
