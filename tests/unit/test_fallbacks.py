"""Host-fallback warnings (harness.measurement.fallbacks): what is collected, what is not."""

from __future__ import annotations

import logging
import warnings

import pytest

from harness.measurement.fallbacks import fallback_operator, host_fallbacks

NPU = (
    "The operator 'aten::_foreach_addcdiv_.Scalar' is not currently supported on the NPU "
    "backend and will fall back to run on the CPU. This may have performance implications."
)


def test_the_operator_is_read_from_torch_npus_wording() -> None:
    assert fallback_operator(NPU) == "aten::_foreach_addcdiv_.Scalar"
    assert fallback_operator("op will fall back to run on the CPU") == "unknown operator"
    assert fallback_operator("something else entirely") is None


def test_fallbacks_are_collected_from_warnings_and_logging_every_time() -> None:
    with host_fallbacks() as found:
        for _ in range(2):  # a repeated warning at one place is still seen
            warnings.warn(NPU, UserWarning, stacklevel=1)
        logging.getLogger("torch_npu").warning(NPU.replace("_foreach_addcdiv_.Scalar", "nonzero"))
    assert found == {"aten::_foreach_addcdiv_.Scalar", "aten::nonzero"}


def test_other_warnings_pass_through_untouched() -> None:
    with pytest.warns(UserWarning, match="unrelated"), host_fallbacks() as found:
        warnings.warn("unrelated", UserWarning, stacklevel=1)
    assert found == set()
