"""Operator profiles (harness.measurement.profile): naming, placement, a real profiled step."""

from __future__ import annotations

import pytest

from backends.cpu import CPUBackend
from harness.measurement.profile import backward_owner, forward_name, profile_step
from tests.workloads.helpers import build


@pytest.mark.parametrize(
    ("node", "owner"),
    [
        ("MmBackward0", "mm"),
        ("autograd::engine::evaluate_function: NativeLayerNormBackward0", "native_layer_norm"),
        ("NativeDropoutBackward0", "native_dropout"),
        ("autograd::engine::evaluate_function: torch::autograd::AccumulateGrad", "accumulate_grad"),
        ("aten::mm", None),
        ("aten::gelu_backward", None),
        ("Optimizer.step#AdamW.step", None),
    ],
)  # fmt: skip
def test_autograd_nodes_map_to_their_forward_operator(node: str, owner: str | None) -> None:
    assert backward_owner(node) == owner


def test_forward_names_drop_the_namespace_and_private_underscore() -> None:
    assert forward_name("aten::_log_softmax") == "log_softmax"
    assert forward_name("aten::addmm") == "addmm"


def test_a_profiled_training_step_places_ops_in_forward_backward_and_optimizer() -> None:
    instance, _ = build("mlp")
    backend = CPUBackend()
    train = profile_step(instance.step("train"), backend, iterations=1, top=1000)
    infer = profile_step(instance.step("infer"), backend, iterations=1, top=1000)
    assert train.time_kind == infer.time_kind == "self cpu" and train.activities == ["CPU"]
    phases = {op.phase for op in train.ops}
    assert {"forward", "backward", "optimizer"} <= phases
    # Linear layers: addmm forward, and its backward (mm) belongs to addmm.
    assert any(op.phase == "backward" and op.forward_op == "addmm" for op in train.ops)
    assert {op.phase for op in infer.ops} == {"forward"}
    assert sum(op.share for op in train.ops) == pytest.approx(1.0)
    assert all(op.calls > 0 for op in train.ops)
