"""The environment snapshot says truthfully how torch was built."""

import torch

from harness.measurement.environment import torch_build


def test_torch_build_names_the_accelerator_runtime_and_the_blas_torch_was_built_with() -> None:
    build = torch_build()
    assert build.split(",")[0].split()[0] in ("cpu", "cuda", "rocm")
    blas = [s for s in torch.__config__.show().split(",") if "BLAS_INFO=" in s]
    if blas:
        assert build.endswith(f", blas {blas[0].split('=')[1].strip()}")
