"""Cost and repeatability of the converge mode on this machine (not collected by pytest: run
it by hand). Times `bench run --mode converge` (default converge workloads unless given) and
prints per case the target, the reference's and the device's steps-to-target and the verdict;
with `--repeat N`, N healthy checks per workload, counting the passes.

    python tests/perf/converge_cost.py --preset tiny --out /tmp/converge-cost
    python tests/perf/converge_cost.py --repeat 20 --workload gpt,mlp --out /tmp/converge-20
    python tests/perf/converge_cost.py --backend converge-spike --workload mlp --out /tmp/c
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness.results.store import load_run

ROOT = Path(__file__).resolve().parents[2]


def run_once(args: argparse.Namespace, out: Path, extra: list[str]) -> tuple[float, Path]:
    """One `bench run --mode converge` into `out`; its wall seconds and its results file."""
    command = [
        sys.executable, "-m", "harness", "run", "--backend", args.backend, "--mode", "converge",
        "--preset", args.preset, "--dtype", args.dtype, "--out", str(out), *extra,
    ]  # fmt: skip
    if args.workload:
        command += ["--workload", args.workload]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/fixtures/plugins"),
                                                         str(ROOT)])}  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    files = sorted(out.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return seconds, files[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--workload", default="")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("extra", nargs="*", help="more `bench run` options after --")
    args = parser.parse_args()
    verdicts: Counter[str] = Counter()
    for index in range(args.repeat):
        seconds, path = run_once(args, args.out / f"run{index}", args.extra)
        record = load_run(path)
        print(f"run {index}: {seconds:.1f} s wall ({path.name})", flush=True)
        for case in record.cases:
            c = case.convergence
            if c is None:
                print(f"  {case.key.id}: {case.status} {case.error.message if case.error else ''}")
                verdicts[f"{case.key.workload} {case.status}"] += 1
                continue
            verdicts[f"{case.key.workload} {c.verdict}"] += 1
            print(
                f"  {case.key.id}: target {c.target_loss:.4f} (ref step {c.target_step}); "
                f"reference {c.reference_steps_to_target}; device {c.steps_to_target}; band "
                f"{c.band.low if c.band else '-'}-{c.band.high if c.band else '-'}; ratio "
                f"{c.steps_ratio}; {case.duration_s or 0:.1f} s; {c.verdict}: "
                f"{'; '.join(c.reasons)}",
                flush=True,
            )
    print("verdicts:", dict(verdicts))


if __name__ == "__main__":
    main()
