"""Operator profiles (harness.measurement.profile): naming, placement, a real profiled step."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.ascend_profiler import operator_rows
from backends.cpu import CPUBackend
from harness.measurement.profile import backward_owner, forward_name, place, profile_step
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


OPERATOR_HEADERS = (
    "Name,Input Shapes,Call Stack,Host Self Duration(us),Host Total Duration(us),"
    "Device Self Duration(us),Device Total Duration(us),Device Self Duration With AICore(us),"
    "Device Total Duration With AICore(us)"
)
"""torch_npu's operator_details.csv header (analysis/prof_view/_operator_view_parser.py)."""
OPERATOR_DETAILS = f"""\
{OPERATOR_HEADERS}
Optimizer.step#SGD.step,,,2.000,10.000,0,7.5,0,0
aten::add_,,,3.000,5.000,5.5,6.5,0,0
aten::copy_,,,2.000,2.000,1.0,1.0,0,0
aten::mul_,,,3.000,3.000,1.0,1.0,0,0
autograd::engine::evaluate_function: MmBackward0,,,1.000,4.001,0,3,0,0
MmBackward0,,,0.000,3.001,0,3,0,0
aten::mm,,,3.001,3.001,3.0,3.0,0,0
aten::relu,,,1.000,1.000,0.5,0.5,0,0
"""


def test_torch_npu_operator_details_rebuild_the_call_tree(tmp_path: Path) -> None:
    """torch_npu's operator_details.csv (pre-order, host total = self + children's totals)
    gives each call its enclosing operators, and so its place in the step."""
    path = tmp_path / "operator_details.csv"
    path.write_text(OPERATOR_DETAILS)
    rows = operator_rows(path)
    assert [(r.name, r.ancestors) for r in rows] == [
        ("Optimizer.step#SGD.step", ()),
        ("aten::add_", ("Optimizer.step#SGD.step",)),
        ("aten::copy_", ("aten::add_", "Optimizer.step#SGD.step")),
        ("aten::mul_", ("Optimizer.step#SGD.step",)),
        ("autograd::engine::evaluate_function: MmBackward0", ()),
        ("MmBackward0", ("autograd::engine::evaluate_function: MmBackward0",)),
        ("aten::mm", ("MmBackward0", "autograd::engine::evaluate_function: MmBackward0")),
        ("aten::relu", ()),
    ]
    assert [r.device_us for r in rows] == [0, 5.5, 1.0, 1.0, 0, 0, 3.0, 0.5]
    assert rows[1].host_us == 3.0
    assert [place(r.name, r.ancestors)[0] for r in rows[1:4]] == ["optimizer"] * 3
    assert place(rows[6].name, rows[6].ancestors) == ("backward", "mm")
    assert place(rows[7].name, rows[7].ancestors) == ("forward", "relu")
