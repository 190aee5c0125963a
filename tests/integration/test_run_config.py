"""`bench run --config FILE.toml`, `bench run --rerun RESULTS.json` and `harness.start`: one
config, three ways in, the same kind of results file out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness.dispatch import start
from harness.results.config import RunConfig
from harness.results.presets import MeasureSettings
from harness.results.store import load_run
from tests.conftest import invoke_bench

FAST = MeasureSettings(warmup_s=0.0, warmup_iterations=1, min_samples=3, max_time_s=0.05)
"""A measurement budget that keeps these runs short; what is checked is the files' shape."""

CONFIG_TOML = """\
workloads = ["mlp"]
modes = ["infer"]
preset = "tiny"
rounds = 2
isolate = "none"
label = "from the file"

[measure]
warmup_s = 0.0
warmup_iterations = 1
min_samples = 3
max_time_s = 0.05
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _bench(capsys: pytest.CaptureFixture[str], *args: str) -> Path:
    """Run `bench run ARGS...` (in this process), expect success, return its results file."""
    result = invoke_bench(capsys, "run", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    out = Path(args[args.index("--out") + 1])
    (path,) = out.glob("*.json")
    return path


def test_a_config_file_maps_onto_run_config_and_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "run.toml", CONFIG_TOML)
    path = _bench(capsys, "--config", str(config), "--label", "flag", "--out", str(tmp_path / "a"))
    stored = load_run(path).config
    assert (stored.workloads, stored.modes, stored.preset) == (["mlp"], ["infer"], "tiny")
    assert stored.rounds == 2 and stored.measure == FAST and stored.isolate == "none"
    assert stored.label == "flag"  # the flag wins over the file
    assert stored.fidelity is False  # decided by the dispatcher, stored


def test_rerun_repeats_a_stored_config_but_not_its_out_or_round_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "run.toml", CONFIG_TOML)
    first = _bench(capsys, "--config", str(config), "--out", str(tmp_path / "first"))
    again = _bench(capsys, "--rerun", str(first), "--out", str(tmp_path / "again"))
    before, after = load_run(first).config, load_run(again).config
    same = {"out", "round_seed"}
    assert before.model_dump(exclude=same) == after.model_dump(exclude=same)
    assert after.out == tmp_path / "again"
    changed = _bench(capsys, "--rerun", str(first), "--rounds", "1", "--out", str(tmp_path / "c"))
    assert load_run(changed).config.rounds == 1
    assert [c.key.id for c in load_run(changed).cases] == [c.key.id for c in load_run(first).cases]


def test_start_writes_the_same_kind_of_file_as_bench_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert harness.start is start
    config = _write(tmp_path / "run.toml", CONFIG_TOML)
    cli = load_run(_bench(capsys, "--config", str(config), "--out", str(tmp_path / "cli")))
    outcome = start(
        RunConfig(
            workloads=["mlp"],
            modes=["infer"],
            preset="tiny",
            rounds=2,
            isolate="none",
            label="from the file",
            measure=FAST,
            out=tmp_path / "lib",
        )
    )
    assert outcome.path is not None and outcome.path.parent == tmp_path / "lib"
    assert outcome.report is None  # workloads were named: no report, as with bench run
    library = load_run(outcome.path)
    differ = {"out", "round_seed"}
    assert library.config.model_dump(exclude=differ) == cli.config.model_dump(exclude=differ)
    assert [c.key for c in library.cases] == [c.key for c in cli.cases]
    assert {c.status for c in library.cases} == {c.status for c in cli.cases} == {"ok"}
    assert set(json.loads(outcome.path.read_text())) == set(
        json.loads(next((tmp_path / "cli").glob("*.json")).read_text())
    )


CONFIG_ERRORS = [
    (None, ["--config", "{dir}/missing.toml"], "--config {dir}/missing.toml: no such file."),
    ("rounds = [", [], "not valid TOML"),
    ("colour = 'red'\n[measure]\nspeed = 1", [], "unknown key(s) colour, measure.speed;"),
    ("preset = 'huge'", [], "unknown preset (in {dir}/bad.toml) 'huge'; choose from: tiny,"),
    ("rounds = 0", [], "rounds (in {dir}/bad.toml): input should be greater than or equal"),
    ("preset = 'tiny'", ["--preset", "huge"], "unknown --preset 'huge'; choose from: tiny"),
    ("", ["--rerun", "{dir}/bad.toml"], "give --config FILE.toml or --rerun RESULTS.json"),
]


@pytest.mark.parametrize(("text", "args", "message"), CONFIG_ERRORS)
def test_a_bad_config_file_exits_2_naming_the_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str | None,
    args: list[str],
    message: str,
) -> None:
    if text is not None:
        args = ["--config", str(_write(tmp_path / "bad.toml", text)), *args]
    args = [a.format(dir=tmp_path) for a in args]
    result = invoke_bench(capsys, "run", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message.format(dir=tmp_path) in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_rerun_of_a_file_that_is_not_results_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "x.json", "{}")
    result = invoke_bench(capsys, "run", "--rerun", str(bad))
    assert result.returncode == 2
    assert "is not an accelbench results file" in result.stderr


def test_flags_override_a_file_field_by_field_and_partial_targets_come_from_the_preset(
    tmp_path: Path,
) -> None:
    from harness.cli.run_config import build_config, read_config_file

    path = _write(
        tmp_path / "serve.toml",
        'preset = "tiny"\n[scenario]\nscenarios = ["server"]\nrequests = 64\nrates = [5.0]\n',
    )
    config = build_config(
        read_config_file(path),
        {
            "scenario.requests": ("requests", 50),
            "scenario.targets.ttft_s": ("target_ttft_ms", 0.1),
        },
        str(path),
    )
    assert config.scenario is not None
    assert (config.scenario.requests, config.scenario.rates) == (50, [5.0])
    assert config.scenario.targets is not None
    assert (config.scenario.targets.ttft_s, config.scenario.targets.tpot_s) == (0.1, 0.02)
