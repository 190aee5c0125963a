"""Public dense peak figures of common accelerators, matched by device name."""

from __future__ import annotations

from pydantic import BaseModel

TERA = 1e12


class Peaks(BaseModel):
    """Known peak FLOP/s per dtype name and memory bandwidth (bytes/s) of one device."""

    flops: dict[str, float]
    bandwidth: float | None
    source: str


def _peaks(bf16: float, tf32: float | None, fp32: float, tbps: float, source: str) -> Peaks:
    flops = {"bf16": bf16 * TERA, "fp16": bf16 * TERA, "fp32": fp32 * TERA}
    if tf32 is not None:
        flops["tf32"] = tf32 * TERA
    return Peaks(flops=flops, bandwidth=tbps * TERA, source=source)


# (substring of the device name, lower case) -> peaks. First match wins: specific names first.
KNOWN_PEAKS: list[tuple[str, Peaks]] = [
    ("h200", _peaks(989, 495, 67, 4.8, "NVIDIA H200 SXM datasheet (dense)")),
    ("h100 pcie", _peaks(756, 378, 51, 2.0, "NVIDIA H100 PCIe datasheet (dense)")),
    ("h100", _peaks(989, 495, 67, 3.35, "NVIDIA H100 SXM datasheet (dense)")),
    ("a100", _peaks(312, 156, 19.5, 2.04, "NVIDIA A100 SXM 80GB datasheet (dense)")),
    ("mi300x", _peaks(1307, 654, 163, 5.3, "AMD Instinct MI300X datasheet (dense)")),
    # First-generation Ascend 910 (torch_npu device name "Ascend910A"): 256 TFLOPS FP16, from
    # Huawei's launch press release of 2019-08-23 ("Huawei launches Ascend 910, the world's most
    # powerful AI processor", huawei.com/en/news/2019/8). No bf16 on this chip; Huawei gave no
    # fp32 or bandwidth figure there. Ascend 910B*/910_93* (Atlas A2/A3): we found no per-chip
    # figure published by Huawei to cite, so they are left out and MFU uses the measured
    # `matmul` peak instead.
    (
        "ascend910a",
        Peaks(
            flops={"fp16": 256 * TERA},
            bandwidth=None,
            source="Huawei Ascend 910 launch press release, 2019-08-23 (FP16)",
        ),
    ),
]


def lookup_peaks(device_name: str) -> Peaks | None:
    """The public peaks of a device whose name contains a known model, else None."""
    lowered = device_name.lower()
    for key, peaks in KNOWN_PEAKS:
        if key in lowered:
            return peaks
    return None
