"""Repeatability of `bench run` on this machine (not collected by pytest: run it by hand).

Runs the same `bench run` N times back to back into a fresh folder, then `bench compare
--fail-on-regression` on each consecutive pair, and prints: each compare's exit code and
verdict counts, each run's training penalty with its CI for gpt and mlp, and coverage: how
many runs' penalty CIs contain the median penalty of all runs. With `--pinned`, it also runs
the command once more under `taskset -c 0` and compares it against the last unpinned run
(a real slowdown: it should be `regressed`, naming the cases).

    python tests/perf/repeatability.py --runs 6 --out /tmp/repeat
    python tests/perf/repeatability.py --judge --out /tmp/repeat   # re-judge stored runs
    python tests/perf/repeatability.py --runs 2 --pinned -- --backend cpu \
        --workload matmul,mlp --mode probe,infer,train --preset small --no-fidelity
"""

from __future__ import annotations

import argparse
import itertools
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.analysis.answer import train_infer_rows
from harness.results.store import load_run

DEFAULT_RUN = [
    "--backend", "cpu", "--workload", "matmul,mlp,gpt", "--mode", "probe,infer,train",
    "--preset", "small", "--no-fidelity",
]  # fmt: skip


def bench(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` through this interpreter (optionally under a `prefix` like taskset)."""
    command = [*prefix, sys.executable, "-m", "harness", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def one_run(out: Path, run_args: list[str], label: str, prefix: tuple[str, ...] = ()) -> Path:
    before = set(out.glob("*.json"))
    started = time.perf_counter()
    proc = bench("run", *run_args, "--out", str(out), "--label", label, prefix=prefix)
    (path,) = set(out.glob("*.json")) - before
    print(f"{label}: exit {proc.returncode} in {time.perf_counter() - started:.0f} s -> {path}")
    return path


def compare(base: Path, new: Path) -> tuple[int, str, list[str]]:
    """Exit code, verdict counts line, and the table rows with a regressed/improved verdict."""
    proc = bench("compare", str(base), str(new), "--fail-on-regression")
    counts = next((ln for ln in proc.stdout.splitlines() if ln.startswith("verdicts:")), "?")
    changed = [ln for ln in proc.stdout.splitlines() if re.search("regressed|improved", ln)]
    return proc.returncode, counts, changed


def penalties(path: Path) -> dict[str, tuple[float, tuple[float, float]]]:
    """workload -> (penalty, CI) of one run."""
    record = load_run(path)
    rows = train_infer_rows("this", record.cases)
    return {r.workload: (r.penalty, r.penalty_ci) for r in rows if r.penalty and r.penalty_ci}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("/tmp/accelbench-repeatability"))
    parser.add_argument("--pinned", action="store_true", help="also a taskset -c 0 run")
    parser.add_argument(
        "--judge", action="store_true", help="no new runs: judge those already in --out"
    )
    parser.add_argument("run_args", nargs="*", help="bench run arguments (after --; all of them)")
    args = parser.parse_args()
    run_args = args.run_args or DEFAULT_RUN
    if args.judge:
        stored = sorted(args.out.glob("*.json"), key=lambda p: load_run(p).started_at)
        paths = [p for p in stored if (load_run(p).label or "").startswith("run")]
        pinned = next((p for p in stored if load_run(p).label == "pinned"), None)
        print(f"judging {len(paths)} stored runs in {args.out}")
    else:
        shutil.rmtree(args.out, ignore_errors=True)
        args.out.mkdir(parents=True)
        print("bench run", " ".join(run_args))
        paths = [one_run(args.out, run_args, f"run{i + 1}") for i in range(args.runs)]
        pinned = None
        if args.pinned:
            pinned = one_run(args.out, run_args, "pinned", prefix=("taskset", "-c", "0"))

    print("\nconsecutive compares (--fail-on-regression):")
    for i, (base, new) in enumerate(itertools.pairwise(paths)):
        code, counts, changed = compare(base, new)
        print(f"  run{i + 1} -> run{i + 2}: exit {code}; {counts}")
        for row in changed:
            print(f"      {row.strip()}")

    found = [penalties(p) for p in paths]
    for workload in sorted({w for f in found for w in f}):
        values = [f[workload] for f in found if workload in f]
        center = statistics.median(v for v, _ in values)
        covered = sum(low <= center <= high for _, (low, high) in values)
        print(f"\npenalty {workload}: median of runs {center:.3f}; ", end="")
        print(f"coverage {covered}/{len(values)}")
        for i, (value, (low, high)) in enumerate(values):
            print(f"  run{i + 1}: {value:.3f} ({low:.3f}-{high:.3f})")

    if pinned is not None:
        code, counts, changed = compare(paths[-1], pinned)
        print(f"\nunpinned run{len(paths)} -> taskset -c 0: exit {code}; {counts}")
        for row in changed:
            print(f"      {row.strip()}")


if __name__ == "__main__":
    main()
