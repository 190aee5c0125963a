"""Measure the drift that fidelity tolerances are derived from (docs/fidelity.md).

    python -m harness.fidelity.drift [--preset tiny,small] [--workload mlp,gpt,convnet]

For each registered fidelity workload and preset it trains on the CPU in fp32, bf16 and fp16
against the CPU fp32 reference, and fp32 against the CPU fp64 reference, and prints the
largest relative loss and gradient-norm deviations (the same quantities the verdict uses).
"""

from __future__ import annotations

import argparse
import time

from harness.fidelity.check import FIDELITY_WORKLOADS, check_fidelity
from workloads.registry import all_workloads

PAIRS: tuple[tuple[str, str], ...] = (
    ("fp32", "cpu:fp64"),
    ("fp32", "cpu:fp32"),
    ("bf16", "cpu:fp32"),
    ("fp16", "cpu:fp32"),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny,small")
    parser.add_argument("--workload", default=",".join(FIDELITY_WORKLOADS))
    parser.add_argument("--steps", type=int, default=None, help="default: by preset")
    parser.add_argument(
        "--pairs",
        default=",".join(f"{d}@{r}" for d, r in PAIRS),
        help="target dtype @ reference, comma-separated (default: all four)",
    )
    args = parser.parse_args(argv)
    known = all_workloads()
    print(
        "| workload | preset | steps | target | reference | max rel loss dev | "
        "max rel grad-norm dev | compared steps | fp16 skipped | final loss ratio | verdict "
        "| seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in [w for w in args.workload.split(",") if w in known]:
        for preset in args.preset.split(","):
            for pair in args.pairs.split(","):
                dtype, _, reference = pair.partition("@")
                start = time.perf_counter()
                r = check_fidelity(
                    "cpu",
                    name,
                    dtype,
                    preset,
                    reference=reference,
                    steps=args.steps,
                    determinism=False,
                )
                print(
                    f"| {name} | {preset} | {r.steps} | cpu {dtype} | {reference} | "
                    f"{r.max_rel_loss_deviation:.3g} | {r.max_rel_grad_norm_deviation:.3g} | "
                    f"{r.compared_steps} | {len(r.skipped_steps)} | "
                    f"{r.final_loss_ratio:.6f} | {r.verdict} | {time.perf_counter() - start:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
