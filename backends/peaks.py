"""Public dense peak figures of common accelerators, each with its source beside it, matched
by the device name the runtime reports (torch.cuda / torch.npu `get_device_name`).

Figures are dense (no 2:4 sparsity): where a vendor quotes only the with-sparsity figure, half
of it is the dense one. A device appears only with figures we could cite; a dtype missing from
an entry has no public figure we could cite, and MFU for it uses the measured matmul peak.
Ascend entries carry no bandwidth: Huawei publishes no HBM bandwidth for the 910B/910C chips.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pydantic import BaseModel

TERA = 1e12


class Figure(NamedTuple):
    """One published figure (FLOP/s or bytes/s) and the document it comes from."""

    value: float
    source: str


class DeviceSpec(BaseModel):
    """A device model: the name patterns that identify it and its cited peak figures."""

    model: str
    patterns: tuple[str, ...]
    """Regular expressions (case-insensitive, searched in the device name); any may match."""
    flops: dict[str, Figure]
    """dtype name (bf16, fp16, tf32, fp32) -> dense peak FLOP/s."""
    bandwidth: Figure | None = None
    """Memory bandwidth, bytes/s."""

    def matches(self, device_name: str) -> bool:
        return any(re.search(p, device_name, re.IGNORECASE) for p in self.patterns)


class Peaks(BaseModel):
    """Known peak FLOP/s per dtype name and memory bandwidth (bytes/s) of one device."""

    model: str = ""
    flops: dict[str, float]
    bandwidth: float | None
    source: str
    """Every source of the figures, one line."""
    sources: dict[str, str] = {}
    """dtype name (and "bandwidth") -> the source of that figure."""


A100 = (
    "NVIDIA A100 Tensor Core GPU datasheet, dense figures "
    "(https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf)"
)
H100 = (
    "NVIDIA H100 Tensor Core GPU datasheet, dense = half the with-sparsity figures "
    "(https://www.nvidia.com/en-us/data-center/h100/)"
)
H200 = (
    "NVIDIA H200 Tensor Core GPU datasheet, dense = half the with-sparsity figures "
    "(https://www.nvidia.com/en-us/data-center/h200/)"
)
B200 = (
    "NVIDIA Blackwell technical brief figures for HGX B200 at 1,000 W, dense, as tabulated at "
    "https://glennklockwood.com/garden/processors/B200"
)
MI300X = "AMD Instinct MI300X datasheet, dense (https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html)"
TORCHTITAN_NPU = (
    "torchtitan-npu torchtitan_npu/patches/tools/metrics.py, cube-unit figure (its MFU "
    "denominator; the chip's 'total' is {total}T; the cube runs fp16 at the bf16 rate) "
    "(https://github.com/torchtitan-npu/torchtitan-npu)"
)
ASCEND_910A = (
    "Huawei Ascend 910 launch press release, 2019-08-23, 'Huawei launches Ascend 910, the "
    "world's most powerful AI processor' (https://www.huawei.com/en/news/2019/8/"
    "huawei-ascend-910-most-powerful-ai-processor)"
)


def _tflops(source: str, **per_dtype: float) -> dict[str, Figure]:
    return {dtype: Figure(value * TERA, source) for dtype, value in per_dtype.items()}


def _tbps(value: float, source: str) -> Figure:
    return Figure(value * TERA, source)


def _nvidia(source: str, bf16: float, tf32: float, fp32: float) -> dict[str, Figure]:
    return _tflops(source, bf16=bf16, fp16=bf16, tf32=tf32, fp32=fp32)


def _ascend(cube: float, total: float) -> dict[str, Figure]:
    """The cube units' figure, the one matmuls can reach, for bf16 and fp16 (one rate)."""
    source = TORCHTITAN_NPU.format(total=total)
    return _tflops(source, bf16=cube, fp16=cube)


# First match wins: specific names before general ones. Name patterns follow what the
# runtimes report: torch.cuda.get_device_name ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe",
# "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA H200", "NVIDIA B200") and
# torch.npu.get_device_name, which is the SoC name ("Ascend910B3", "Ascend910B2C",
# "Ascend910B4-1", "Ascend910_9392", "Ascend910A").
SPECS: list[DeviceSpec] = [
    DeviceSpec(
        model="NVIDIA H200 SXM",
        patterns=(r"\bh200\b(?!.*\bnvl\b)",),
        flops=_nvidia(H200, bf16=989, tf32=495, fp32=67),
        bandwidth=_tbps(4.8, H200),
    ),
    DeviceSpec(
        # Per GPU of the NVL pair: the datasheet's NVL column gives one GPU's figures.
        model="NVIDIA H100 NVL",
        patterns=(r"\bh100\b.*\bnvl\b",),
        flops=_nvidia(H100, bf16=835.5, tf32=417.5, fp32=60),
        bandwidth=_tbps(3.9, H100),
    ),
    DeviceSpec(
        model="NVIDIA H100 PCIe",
        patterns=(r"\bh100\b.*\bpcie\b",),
        flops=_nvidia(H100, bf16=756, tf32=378, fp32=51),
        bandwidth=_tbps(2.0, H100),
    ),
    DeviceSpec(
        model="NVIDIA H100 SXM",
        patterns=(r"\bh100\b.*\bhbm3\b", r"\bh100\b.*\bsxm"),
        flops=_nvidia(H100, bf16=989, tf32=495, fp32=67),
        bandwidth=_tbps(3.35, H100),
    ),
    DeviceSpec(
        model="NVIDIA A100 SXM4 80GB",
        patterns=(r"\ba100\b.*sxm4?-80gb",),
        flops=_nvidia(A100, bf16=312, tf32=156, fp32=19.5),
        bandwidth=_tbps(2.039, A100),
    ),
    DeviceSpec(
        model="NVIDIA A100 PCIe 80GB",
        patterns=(r"\ba100\b.*80gb.*pcie",),
        flops=_nvidia(A100, bf16=312, tf32=156, fp32=19.5),
        bandwidth=_tbps(1.935, A100),
    ),
    DeviceSpec(
        model="NVIDIA A100 40GB",
        patterns=(r"\ba100\b.*40gb",),
        flops=_nvidia(A100, bf16=312, tf32=156, fp32=19.5),
        bandwidth=_tbps(1.555, A100),
    ),
    DeviceSpec(
        model="NVIDIA A100",
        patterns=(r"\ba100\b",),
        flops=_nvidia(A100, bf16=312, tf32=156, fp32=19.5),
    ),
    DeviceSpec(
        model="NVIDIA B200",
        patterns=(r"\bb200\b",),
        flops=_nvidia(B200, bf16=2250, tf32=1100, fp32=80),
        bandwidth=_tbps(8.0, B200),
    ),
    DeviceSpec(
        model="AMD Instinct MI300X",
        patterns=(r"\bmi300x\b",),
        flops=_tflops(MI300X, bf16=1307, fp16=1307, tf32=654, fp32=163),
        bandwidth=_tbps(5.3, MI300X),
    ),
    DeviceSpec(model="Ascend 910B1", patterns=(r"^ascend910b1",), flops=_ascend(373.88, 400)),
    DeviceSpec(model="Ascend 910B2", patterns=(r"^ascend910b2",), flops=_ascend(353.89, 376)),
    DeviceSpec(model="Ascend 910B3", patterns=(r"^ascend910b3",), flops=_ascend(294.91, 313)),
    DeviceSpec(model="Ascend 910B4", patterns=(r"^ascend910b4",), flops=_ascend(245.76, 280)),
    DeviceSpec(
        # Ascend 910C (Atlas A3, SoC names Ascend910_93xx): two dies per package, each die is
        # one device to torch_npu; the figure is per die.
        model="Ascend 910C (one die)",
        patterns=(r"^ascend910_93\d\d",),
        flops=_ascend(353.89, 376),
    ),
    DeviceSpec(
        # First-generation Ascend 910: no bf16; Huawei gave no fp32 or bandwidth figure there.
        model="Ascend 910A",
        patterns=(r"^ascend910a$",),
        flops=_tflops(ASCEND_910A, fp16=256),
    ),
]


MIG_SLICE = re.compile(r"\bMIG\s+\d+g\.\d+gb\b", re.IGNORECASE)
"""A MIG instance's name, e.g. "NVIDIA H100 80GB HBM3 MIG 1g.10gb": a slice of the GPU."""


def find_spec(device_name: str) -> DeviceSpec | None:
    """The first DeviceSpec whose patterns match the device name, else None. A MIG slice has
    a fraction of the GPU's compute and bandwidth, and no published figure of its own, so it
    matches nothing (MFU then uses the measured matmul peak) rather than the full GPU."""
    if MIG_SLICE.search(device_name):
        return None
    for spec in SPECS:
        if spec.matches(device_name.strip()):
            return spec
    return None


def lookup_peaks(device_name: str) -> Peaks | None:
    """The public peaks of a device whose name identifies a known model, else None."""
    spec = find_spec(device_name)
    if spec is None:
        return None
    sources = {dtype: figure.source for dtype, figure in spec.flops.items()}
    if spec.bandwidth is not None:
        sources["bandwidth"] = spec.bandwidth.source
    distinct = list(dict.fromkeys(sources.values()))
    return Peaks(
        model=spec.model,
        flops={dtype: figure.value for dtype, figure in spec.flops.items()},
        bandwidth=spec.bandwidth.value if spec.bandwidth else None,
        source=f"{spec.model}: " + "; ".join(distinct),
        sources=sources,
    )
