"""How `bench run` builds its RunConfig: the options given on the command line over a config
file (`--config FILE.toml`) or a stored run's config (`--rerun RESULTS.json`). Every key of
the file is a RunConfig field (nested settings are tables); every error names the option or
the key and the file, and is a BenchError (exit 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, get_args, get_origin

from pydantic import BaseModel, ValidationError

from harness.errors import BenchError
from harness.results.config import RunConfig, config_problems
from harness.results.presets import PRESET_NAMES, PRESETS
from harness.results.store import load_run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RERUN_DROPPED: tuple[str, ...] = ("out", "round_seed")
"""What `--rerun` does not copy from the stored config: the output folder (where the new
file goes is the rerun's own choice, `--out`, default `results`) and the round seed (a rerun
is a fresh sample of the same experiment, in a fresh case order; pass `--round-seed` with the
stored seed to repeat the order too). Everything else, including what the runner resolved
from the preset (rounds, interleaving, fidelity), is copied."""


class Option(NamedTuple):
    """Where one command-line option goes in RunConfig: a dotted field path (`scenario.rates`)
    and how its value is turned into the field's (None: as is)."""

    field: str
    convert: Callable[[Any], Any] | None = None


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file `path` as a dict of RunConfig fields; BenchError naming the file for a
    missing or unreadable file, bad TOML, or a key RunConfig does not have."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"--config {path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"--config {path}: cannot read it: {exc}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"--config {path}: not valid TOML: {exc}.") from None
    unknown = unknown_keys(data, RunConfig)
    if unknown:
        valid = ", ".join(RunConfig.model_fields)
        raise BenchError(
            f"--config {path}: unknown key(s) {', '.join(unknown)}; RunConfig's keys are: {valid}."
        )
    return data


def unknown_keys(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted keys of `data` that are not fields of `model` (tables of nested settings
    checked against their own model)."""
    unknown: list[str] = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(prefix + key)
            continue
        nested = _model_of(field.annotation)
        if nested is not None and isinstance(value, dict):
            unknown += unknown_keys(value, nested, f"{prefix}{key}.")
    return unknown


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `annotation` (`Model`, `Model | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def rerun_base(path: Path) -> dict[str, Any]:
    """The config of the stored run in `path`, less RERUN_DROPPED, as RunConfig fields;
    BenchError for an unusable file."""
    record = load_run(path)
    return record.config.model_dump(mode="json", exclude=set(RERUN_DROPPED))


def set_field(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `data[a][b]... = value` for `dotted` `a.b...`, creating the tables on the way."""
    *tables, last = dotted.split(".")
    for table in tables:
        existing = data.get(table)
        data[table] = existing = dict(existing) if isinstance(existing, dict) else {}
        data = existing
    data[last] = value


def fill_targets(data: dict[str, Any]) -> None:
    """A scenario run that gives some latency targets takes the others from its preset."""
    targets = (data.get("scenario") or {}).get("targets")
    name = data.get("preset", RunConfig.model_fields["preset"].default)
    if isinstance(targets, dict) and name in PRESET_NAMES:
        defaults = PRESETS[name].scenario.targets.model_dump()
        data["scenario"] = {**data["scenario"], "targets": {**defaults, **targets}}


def build_config(
    base: dict[str, Any], given: dict[str, tuple[str, Any]], source: str | None
) -> RunConfig:
    """The RunConfig of `base` (a file's or stored run's fields, from `source`) with the
    options `given` on the command line (field path -> (option, value)) over it.

    BenchError naming the option (for a value from the command line) or the key and file
    (for one from the file) of every value RunConfig refuses."""
    data = dict(base)
    for field, (_, value) in given.items():
        set_field(data, field, value)
    fill_targets(data)

    def name(loc: tuple[Any, ...]) -> str:
        path = [str(p) for p in loc if not isinstance(p, int)]
        for end in range(len(path), 0, -1):
            option = given.get(".".join(path[:end]))
            if option is not None:
                return "--" + option[0].replace("_", "-")
        dotted = ".".join(path)
        return f"{dotted} (in {source})" if source else dotted

    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise BenchError(config_problems(exc, name)) from None
