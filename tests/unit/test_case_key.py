"""CaseKey's identities: the one rule for "the same case", and its named variants."""

from __future__ import annotations

from typing import Any

import pytest

from harness.distributed.scaling import apply_scaling_efficiency
from harness.results.schema import CaseKey, CaseResult, Throughput


def key(**update: Any) -> CaseKey:
    fields: dict[str, Any] = {
        "workload": "gpt",
        "workload_version": "1",
        "mode": "train",
        "dtype": "bf16",
        "batch": 8,
        "preset": "small",
        "params": {"seq": 128, "heads": 4},
    }
    return CaseKey(**{**fields, **update})


def test_identity_is_the_same_for_equal_keys_whatever_the_params_order() -> None:
    a = key(params={"seq": 128, "heads": 4})
    b = key(params={"heads": 4, "seq": 128})
    assert a.identity() == b.identity()
    assert a.params_text() == b.params_text() == '{"heads": 4, "seq": 128}'


@pytest.mark.parametrize(
    "update",
    [
        {"workload": "mlp"},
        {"workload_version": "2"},
        {"mode": "infer"},
        {"dtype": "fp32"},
        {"batch": 16},
        {"preset": "large"},
        {"params": {"seq": 256, "heads": 4}},
        {"compile": True},
        {"nproc": 2},
    ],
)
def test_every_field_makes_a_different_case(update: dict[str, Any]) -> None:
    assert key().identity() != key(**update).identity()


def test_ignoring_leaves_only_the_named_fields_out() -> None:
    assert key(nproc=4).identity(ignoring=("nproc",)) == key().identity(ignoring=("nproc",))
    assert key(nproc=4, batch=4).identity(ignoring=("nproc",)) != key().identity(
        ignoring=("nproc",)
    )


def test_pair_key_pairs_train_with_infer_of_the_same_workload_version_only() -> None:
    train, infer = key(mode="train"), key(mode="infer")
    assert train.pair_key() == infer.pair_key()
    assert train.pair_key() != key(mode="infer", workload_version="2").pair_key()
    assert train.pair_key() != key(mode="infer", params={"seq": 256, "heads": 4}).pair_key()


def test_history_key_follows_a_case_across_workload_versions_but_not_modes() -> None:
    assert key().history_key() == key(workload_version="2").history_key()
    assert key().history_key() != key(mode="infer").history_key()


def _ok(k: CaseKey, value: float) -> CaseResult:
    return CaseResult(key=k, status="ok", throughput=Throughput(value=value, unit="tokens/s"))


def test_scaling_groups_one_case_over_world_sizes_and_nothing_else() -> None:
    one, four = _ok(key(), 100.0), _ok(key(nproc=4), 300.0)
    other = _ok(key(batch=4, nproc=4), 50.0)
    apply_scaling_efficiency([one, four, other])
    assert one.scaling_efficiency == 1.0
    assert four.scaling_efficiency == pytest.approx(0.75)
    assert other.scaling_efficiency is None
