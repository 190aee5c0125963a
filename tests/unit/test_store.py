import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backends.cpu import CPUBackend
from harness.errors import BenchError
from harness.measurement.environment import capture_environment
from harness.results.config import RunConfig
from harness.results.schema import SCHEMA_VERSION, RunRecord
from harness.results.store import claim_run_path, load_run, load_runs, save_run


def make_record(run_id: str = "abcdef0123456789") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        backend="cpu",
        config=RunConfig(),
        environment=capture_environment(),
        device=CPUBackend().describe(),
        label="ünïcødé label",
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    record = make_record()
    path = claim_run_path(tmp_path, record)
    save_run(record, path)
    assert path.name == "20260102T030405Z-cpu-abcdef01.json"
    assert load_run(path) == record


def test_claimed_paths_never_collide(tmp_path: Path) -> None:
    record = make_record()
    paths = {claim_run_path(tmp_path, record) for _ in range(5)}
    assert len(paths) == 5


def test_label_never_enters_the_path(tmp_path: Path) -> None:
    record = make_record()
    record.label = "../../escape"
    record.backend = "../evil"
    path = claim_run_path(tmp_path, record)
    assert path.parent == tmp_path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ('{"schema_version": 1, "run_id": "x", "cases": [', "not valid JSON"),
        ('{"hello": "world"}', "not an accelbench results file"),
        ('{"schema_version": 99, "run_id": "x"}', "newer accelbench"),
        ('{"schema_version": 1, "run_id": "x"}', "does not match the results schema"),
    ],
)
def test_unusable_files_explain_why(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BenchError, match=message):
        load_run(path)


def test_folder_skips_bad_files_with_a_warning_but_explicit_file_raises(tmp_path: Path) -> None:
    good = make_record()
    save_run(good, claim_run_path(tmp_path, good))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "newer.json").write_text(
        json.dumps({"schema_version": SCHEMA_VERSION + 1, "run_id": "n"})
    )
    records, warnings = load_runs([tmp_path])
    assert [r.run_id for r in records] == [good.run_id]
    assert len(warnings) == 2
    assert any("broken.json" in w for w in warnings)
    assert any("newer.json" in w for w in warnings)
    with pytest.raises(BenchError, match=r"broken\.json"):
        load_runs([tmp_path / "broken.json"])
    with pytest.raises(BenchError, match="no such results file"):
        load_runs([tmp_path / "missing.json"])
