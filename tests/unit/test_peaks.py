"""The spec peak table: every figure has its source beside it, and the device names the
runtimes report map to the right entry."""

from __future__ import annotations

import pytest

from backends.peaks import SPECS, TERA, find_spec, lookup_peaks


def test_every_figure_has_a_source_beside_it() -> None:
    for spec in SPECS:
        figures = list(spec.flops.values()) + ([spec.bandwidth] if spec.bandwidth else [])
        assert figures, spec.model
        for figure in figures:
            assert figure.value > 0, spec.model
            assert len(figure.source) > 20 and ("http" in figure.source), (spec.model, figure)


@pytest.mark.parametrize(
    ("reported", "model"),
    [
        # torch.cuda.get_device_name()
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB"),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB"),
        ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
        ("NVIDIA B200", "NVIDIA B200"),
        ("AMD Instinct MI300X", "AMD Instinct MI300X"),
        # torch.npu.get_device_name(): the SoC name
        ("Ascend910B1", "Ascend 910B1"),
        ("Ascend910B2", "Ascend 910B2"),
        ("Ascend910B2C", "Ascend 910B2"),
        ("Ascend910B3", "Ascend 910B3"),
        ("Ascend910B4", "Ascend 910B4"),
        ("Ascend910B4-1", "Ascend 910B4"),
        ("Ascend910_9392", "Ascend 910C (one die)"),
        ("Ascend910_9382", "Ascend 910C (one die)"),
        ("Ascend910A", "Ascend 910A"),
    ],
)
def test_reported_device_names_find_their_entry(reported: str, model: str) -> None:
    spec = find_spec(reported)
    assert spec is not None and spec.model == model


@pytest.mark.parametrize(
    "reported",
    [
        "NVIDIA H200 NVL",
        "NVIDIA GeForce RTX 4090",
        "Ascend910ProB",
        "cpu",
        # MIG slices: a fraction of the GPU, no figure of their own (never the full GPU's)
        "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
        "NVIDIA H100 80GB HBM3 MIG 3g.40gb",
        "NVIDIA A100-SXM4-40GB MIG 7g.40gb",
    ],
)
def test_devices_without_a_citable_figure_get_none(reported: str) -> None:
    assert lookup_peaks(reported) is None


def test_lookup_gives_per_dtype_figures_and_sources() -> None:
    h100 = lookup_peaks("NVIDIA H100 80GB HBM3")
    assert h100 is not None
    assert h100.flops["bf16"] == 989 * TERA and h100.flops["tf32"] == 495 * TERA
    assert h100.bandwidth == pytest.approx(3.35 * TERA)
    assert "h100" in h100.sources["bf16"] and "h100" in h100.sources["bandwidth"]
    b3 = lookup_peaks("Ascend910B3")
    assert b3 is not None
    # the cube units' figure (torchtitan-npu's MFU denominator), fp16 at the bf16 rate
    assert b3.flops == {"bf16": 294.91 * TERA, "fp16": 294.91 * TERA}
    assert "torchtitan-npu" in b3.sources["bf16"] and "313" in b3.sources["bf16"]
    assert b3.bandwidth is None
    nvl = lookup_peaks("NVIDIA H100 NVL")
    assert nvl is not None and nvl.flops["bf16"] == 835.5 * TERA
    assert nvl.bandwidth == pytest.approx(3.9 * TERA)
