from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.errors import BenchError
from harness.results.config import RunConfig, config_problems
from harness.results.presets import PRESET_NAMES, PRESETS
from harness.run.plan import plan_cases
from workloads.base import WorkloadError


def test_cases_cross_multiply_modes_dtypes_batches() -> None:
    specs = plan_cases(
        RunConfig(workloads=["mlp"], dtypes=["fp32", "bf16"], batches=[1, 4], preset="tiny")
    )
    ids = [s.key.id for s in specs]
    assert len(ids) == 2 * 2 * 2
    assert "mlp/train/bf16/b4/tiny" in ids


def test_param_overrides_reach_the_workload() -> None:
    (spec,) = plan_cases(
        RunConfig(workloads=["mlp"], modes=["infer"], preset="tiny", params={"hidden": "48"})
    )
    assert spec.params["hidden"] == 48
    assert spec.key.params["hidden"] == 48


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (RunConfig(workloads=["nope"]), WorkloadError, "unknown workload 'nope'; choose from: mlp"),
        (RunConfig(workloads=["mlp"], modes=["decode"]), BenchError, "offer: infer, train"),
        (RunConfig(workloads=["mlp"], params={"colour": "red"}), BenchError, "valid: batch"),
        (RunConfig(workloads=["mlp"], params={"hidden": "wide"}), WorkloadError, "expects a int"),
        (RunConfig(workloads=["mlp"], params={"hidden": "-3"}), WorkloadError, "must be > 0"),
        (RunConfig(workloads=["mlp"], params={"gpt.x": "1"}), BenchError, "not selected"),
    ],
)
def test_bad_input_names_the_valid_choices(
    config: RunConfig, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        plan_cases(config)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"modes": ["fly"]}, "unknown modes 'fly'; choose from: infer, train, prefill"),
        ({"dtypes": ["int3"]}, "unknown dtypes 'int3'; choose from: fp32, bf16, fp16."),
        ({"dtypes": []}, "dtypes: list should have at least 1 item"),
        ({"preset": "huge"}, "unknown preset 'huge'; choose from: tiny, small, base."),
        ({"isolate": "vm"}, "unknown isolate 'vm'; choose from: none, worker, case."),
        ({"interleave": "all"}, "unknown interleave 'all'; choose from: run, workload, case."),
        ({"batches": [0]}, "batches: input should be greater than 0, got 0."),
        ({"nnodes": 2}, "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
        ({"nproc": 2, "profile": True}, "profile single-process cases only"),
    ],
)
def test_the_config_refuses_bad_options_when_built_naming_the_choices(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(workloads=["mlp"], **options)
    assert message in config_problems(caught.value)


def test_every_preset_name_has_its_defaults_and_no_other_does() -> None:
    assert set(PRESETS) == set(PRESET_NAMES)
    for name, preset in PRESETS.items():
        assert preset.fidelity_preset in PRESETS
        assert set(preset.suite) >= {"mlp", "gpt"}, name
    config = RunConfig(preset="base")
    assert config.rounds_count() == PRESETS["base"].rounds
    assert config.interleave_mode() == "workload"
    assert config.fidelity_timeout() == 3.0 * PRESETS["base"].case_timeout_s


def test_the_tiny_suite_adds_llama_and_moe_and_the_default_suite_does_not() -> None:
    from harness.run.fidelity_suite import plan_fidelity
    from harness.run.plan import default_workloads

    assert {"llama", "moe"} <= set(default_workloads("tiny"))
    assert not {"llama", "moe"} & set(default_workloads("small"))
    assert not {"llama", "moe"} & set(default_workloads("base"))
    tiny = {c.key.workload for c in plan_cases(RunConfig(preset="tiny"))}
    assert {"llama", "moe", "gpt"} <= tiny
    checked = {s.workload for s in plan_fidelity(RunConfig(preset="tiny", fidelity=True))}
    assert {"llama", "moe"} <= checked


def test_the_config_file_example_in_the_docs_is_a_valid_run_config(tmp_path: Path) -> None:
    from harness.cli.run_config import build_config, read_config_file

    text = (Path(__file__).parents[2] / "docs" / "config.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "run.toml"
    path.write_text(example)
    config = build_config(read_config_file(path), {}, str(path))
    assert config.workloads == ["mlp", "gpt"] and config.measure is not None
    assert config.params["gpt.n_layer"] == "2"
