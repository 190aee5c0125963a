"""Results files: one JSON file per run, replaced atomically, never overwriting another run.

Reading never executes anything: files are parsed as JSON and validated by pydantic.
Derived figures (MFU, the peaks used: `harness.results.derive.apply_peaks`) are computed from
the stored facts and the current peak table on every write and every read, so an older file
read with a newer peak table gives the newer figures.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from harness.errors import BenchError
from harness.results.derive import apply_peaks
from harness.results.schema import SCHEMA_VERSION, RunRecord

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def prepare_out_dir(out: Path) -> Path:
    """Create `out` if needed and check it is writable; BenchError before any work if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the output folder {out}: {exc.strerror or exc}.") from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise BenchError(f"the output folder {out} is not a writable folder.")
    return out


def claim_run_path(out_dir: Path, record: RunRecord) -> Path:
    """Create and return a new, empty file `<UTC timestamp>-<backend>-<short id>.json` in out_dir.

    The name is claimed with O_EXCL, so concurrent runs never share a file. Labels never enter
    the path.
    """
    stamp = record.started_at.strftime("%Y%m%dT%H%M%SZ")
    backend = _UNSAFE.sub("_", record.backend)[:40] or "backend"
    short = _UNSAFE.sub("_", record.run_id)[:8]
    for attempt in range(100):
        suffix = "" if attempt == 0 else f"-{attempt}"
        path = out_dir / f"{stamp}-{backend}-{short}{suffix}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise BenchError(f"could not claim a new results file in {out_dir}.")


def _umask_mode() -> int:
    """The mode a plainly created file gets here: 0o666 less the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def save_run(record: RunRecord, path: Path) -> None:
    """Derive `record`'s figures (`apply_peaks`, in place), then write it to `path`
    atomically: a reader sees the old file or the new, never half. The file gets the umask's
    mode, as any other file the user writes (not the temporary file's private 0600), so a
    shared results folder stays readable to the team."""
    apply_peaks(record)
    data = record.model_dump_json(indent=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_run(path: Path | str) -> RunRecord:
    """Read one results file, its derived figures computed afresh (`apply_peaks`); raises
    BenchError saying why a file is unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read results file {path}: {exc}") from None
    if not text.strip():
        raise BenchError(f"results file {path} is empty.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"results file {path} is not valid JSON (truncated?): {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data or "run_id" not in data:
        raise BenchError(f"{path} is not an accelbench results file (no schema_version/run_id).")
    version = data["schema_version"]
    if not isinstance(version, int):
        raise BenchError(f"{path} has an invalid schema_version {version!r}.")
    if version > SCHEMA_VERSION:
        raise BenchError(
            f"{path} was written by a newer accelbench (schema {version}; this one reads up to "
            f"{SCHEMA_VERSION}). Upgrade accelbench to read it."
        )
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BenchError(
            f"{path} does not match the results schema ({exc.error_count()} errors; first at "
            f"{where}: {first['msg']})."
        ) from None
    apply_peaks(record)
    return record


def expand_paths(paths: Iterable[Path | str]) -> list[tuple[Path, bool]]:
    """Each results file named, or found in a named folder, with whether it was named
    explicitly. Raises BenchError for a path that does not exist."""
    found: list[tuple[Path, bool]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [(p, False) for p in sorted(path.glob("*.json")) if not p.name.startswith(".")]
        elif path.exists():
            found.append((path, True))
        else:
            raise BenchError(f"no such results file or folder: {path}")
    return found


def load_runs_with_paths(
    paths: Iterable[Path | str],
) -> tuple[list[tuple[Path, RunRecord]], list[str]]:
    """Like load_runs, keeping the file each run came from."""
    loaded: list[tuple[Path, RunRecord]] = []
    warnings: list[str] = []
    for path, explicit in expand_paths(paths):
        try:
            loaded.append((path, load_run(path)))
        except BenchError as exc:
            if explicit:
                raise
            warnings.append(f"skipped {exc}")
    loaded.sort(key=lambda entry: entry[1].started_at)
    return loaded, warnings


def load_runs(paths: Iterable[Path | str]) -> tuple[list[RunRecord], list[str]]:
    """Every run in the given files and folders, oldest first, and a warning per skipped file.

    Unusable files found inside a folder are skipped with a warning; an unusable file named
    explicitly raises BenchError.
    """
    loaded, warnings = load_runs_with_paths(paths)
    return [record for _, record in loaded], warnings
