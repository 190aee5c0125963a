"""Telemetry over the run and energy to the target (docs/convergence.md), on the nvml-host test
device: the CPU trains, and the CUDA backend's own NVML code reads a fake NVML
(tests/fixtures/fake_nvml) whose energy counter advances at a constant 250 W of wall time.
Decided on counts, steps and a ratio of joules to seconds (power), never on seconds."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from backends.nvml import load_nvml
from harness.cli.tables import convergence_table
from harness.results.convergence_judge import telemetry_summary
from harness.results.schema import CaseResult, Convergence
from tests.conftest import PLUGINS
from tests.convergence.cases import case_key, converge

pytestmark = pytest.mark.slow

FAKE_NVML = Path(__file__).resolve().parent.parent / "fixtures" / "fake_nvml"
POWER_W = 250.0
"""The fake NVML's constant power (its default)."""


@pytest.fixture(scope="module")
def metered() -> Iterator[Convergence]:
    """mlp tiny on nvml-host, one seed to the target of step 20, then a soak of 0.3 s of
    training; the fake NVML is imported for this case only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(PLUGINS))
        patch.syspath_prepend(str(FAKE_NVML))
        patch.delenv("ACCELBENCH_FAKE_NVML_POWER_W", raising=False)
        patch.delenv("ACCELBENCH_FAKE_NVML_NO_COUNTER", raising=False)
        sys.modules.pop("pynvml", None)
        load_nvml.cache_clear()
        try:
            yield converge("nvml-host", target_step=20, eval_batches=1, soak_s=0.3)
        finally:
            sys.modules.pop("pynvml", None)
            load_nvml.cache_clear()


def test_telemetry_is_read_at_every_eval_of_the_device_seeds(metered: Convergence) -> None:
    device = [c for c in metered.curves if c.run == "device"]
    assert [(t.seed, t.step) for t in metered.telemetry] == [
        (c.seed, step) for c in device for step in c.eval_steps
    ]
    assert all(
        t.values == {"clock_mhz": 1410.0, "power_w": POWER_W, "temperature_c": 61.0}
        for t in metered.telemetry
    )
    # The soak (0.3 s of training after the target) trained past the target, and telemetry
    # follows the run there too.
    (curve,) = device
    assert curve.steps_to_target == 20
    assert metered.soak_steps == curve.steps_trained > 20
    assert metered.telemetry[-1].step == curve.eval_steps[-1]


def test_energy_to_target_is_the_device_power_times_the_training_time(
    metered: Convergence,
) -> None:
    (joules,) = metered.energy_to_target_j
    (seconds,) = metered.time_to_target_s
    assert joules is not None and seconds is not None
    assert metered.energy_to_target_median_j == joules
    assert metered.energy_method == "NVML total energy counter"
    assert metered.energy_note is None
    # The meter is on over the training steps (evals excluded) up to the target only, not
    # over the soak: joules / training seconds is the device's power. The window also holds
    # the host operations between two timed steps (the batch, the loss scaler's bookkeeping):
    # about 15% more than the timed steps for mlp tiny's 1 ms steps, hence the upper margin.
    assert 0.95 * POWER_W <= joules / seconds <= 1.5 * POWER_W, joules / seconds
    (curve,) = [c for c in metered.curves if c.run == "device"]
    assert len(curve.energy_j) == len(curve.eval_steps)
    assert curve.energy_j[0] == 0.0
    assert curve.energy_j == sorted(curve.energy_j)  # type: ignore[type-var]
    assert curve.energy_to_target_j == joules
    assert all(not c.energy_j for c in metered.curves if c.run != "device")


def test_no_energy_meter_stores_the_reason(
    test_plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The CPU's RAPL counters are absent (an empty powercap folder): no joules, the reason."""
    monkeypatch.setenv("ACCELBENCH_POWERCAP_ROOT", str(tmp_path / "no-powercap"))
    c = converge("healthy-cpu", target_step=20, eval_batches=1)
    assert c.steps_to_target == [20]
    assert c.energy_to_target_j == [None]
    assert c.energy_to_target_median_j is None and c.energy_method is None
    assert c.energy_note is not None and "no RAPL energy counter" in c.energy_note


def test_the_cli_table_and_the_summary_show_energy_and_telemetry(metered: Convergence) -> None:
    samples = len(metered.telemetry)
    assert telemetry_summary(metered) == {
        "clock_mhz": (samples, 1410.0, 1410.0, 1410.0),
        "power_w": (samples, POWER_W, POWER_W, POWER_W),
        "temperature_c": (samples, 61.0, 61.0, 61.0),
    }
    case = CaseResult(key=case_key("mlp")[0], status="ok", convergence=metered)
    console = Console(record=True, width=400)
    console.print(convergence_table([case]))
    text = console.export_text()
    assert "to target (median seed)" in text
    assert f"{metered.energy_to_target_median_j:.3g} J" in text
