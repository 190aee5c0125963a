"""Derive fidelity's band floors and fallback tolerances from measured honest drift, and show
the fault matrix against the current bands (not collected by pytest: run it by hand, and again
whenever a workload's initialisation, data or optimiser changes).

    python tests/perf/derive_fidelity_floors.py [--preset tiny,small] [--seeds 0,1]
        [--workload gpt,llama,moe,mlp,convnet] [--faults]

Rules (docs/fidelity.md), on the judge's scales (loss x the reference's loss at the step,
final loss x the reference's final loss, gradient norms x the reference's median):
- fp32 floor = 10 x the largest fp32-vs-fp64 drift (loss: per step or final; gradient norm),
  rounded up to 1, 2 or 5 x 10^n: other devices sum in other orders than the CPU.
- bf16 / fp16 floor = the largest drift after one step of honest rounding (step 0, any
  workload, preset and seed), and never below fp32's.
- fallback table (no honest run): pass = 2.5 x the largest honest drift in the window (fp32:
  the floor), warn = 2 x pass (fp32: 10 x).
`--faults` then runs each fault plugin of tests/fixtures/plugins (and the healthy one) with
the current bands in harness/results/fidelity.py and prints each verdict.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from harness.fidelity.drift import HEADER, DriftRow, parser, row_text, survey_from

PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"

FAULTS = (
    "healthy-cpu",
    "grads-x1.25",
    "grads-last-block-zero",
    "grads-bias",
    "attn-grads-x1.25",
    "grads-late-last-eighth",
)


def round_up(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above `value` (0 stays 0)."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value))
    for mantissa in (1, 2, 5, 10):
        candidate = float(f"{mantissa}e{exponent}")
        if candidate >= value * (1 - 1e-9):
            return candidate
    return float(f"1e{exponent + 1}")


def collect(argv: list[str], reference: str) -> list[DriftRow]:
    """The survey's rows against `reference`, printed as they come."""
    args = parser("drift").parse_args([*argv, "--reference", reference])
    print(f"\nhonest drift against {reference}\n\n{HEADER}", flush=True)
    rows = []
    for row in survey_from(args):
        print(row_text(row), flush=True)
        rows.append(row)
    return rows


def derive(against_fp32: list[DriftRow], against_fp64: list[DriftRow]) -> None:
    """Print the floors and fallback tolerances the module docstring's rules give."""
    fp32 = [r for r in against_fp64 if r.dtype == "fp32"]
    fp32_loss = round_up(10 * max((max(r.loss_max, r.final_loss or 0) for r in fp32), default=0))
    fp32_norm = round_up(10 * max((r.grad_norm_max for r in fp32), default=0))
    print("\nderived (paste into harness/results/fidelity.py):\n")
    print(f'    "fp32": BandFloor(loss={fp32_loss:g}, grad_norm={fp32_norm:g}),')
    tables = [f"    fp32: pass {fp32_loss:g} / {fp32_norm:g}, warn 10 x"]
    for dtype in ("bf16", "fp16"):
        rows = [r for r in against_fp32 if r.dtype == dtype]
        if not rows:
            continue
        loss = max(fp32_loss, round_up(max(r.loss_step0 for r in rows)))
        norm = max(fp32_norm, round_up(max(r.grad_norm_step0 for r in rows)))
        print(f'    "{dtype}": BandFloor(loss={loss:g}, grad_norm={norm:g}),')
        tables.append(
            f"    {dtype}: pass {round_up(2.5 * max(r.loss_max for r in rows)):g} / "
            f"{round_up(2.5 * max(r.grad_norm_max for r in rows)):g}, warn 2 x"
        )
    print("\nfallback table (loss / grad norm):\n" + "\n".join(tables))


def faults(presets: list[str], workloads: list[str]) -> None:
    """Each fault plugin (and the healthy one) checked in fp32 and bf16 at each preset."""
    from harness.fidelity.jobs import check_fidelity
    from harness.fidelity.trajectory import resolved_params, train_baseline
    from harness.results.fidelity import fidelity_steps
    from workloads.registry import get_workload

    sys.path.insert(0, str(PLUGINS))
    print("\n| preset | workload | dtype | device | verdict | loss dev | final dev | reasons |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in presets:
        for name in workloads:
            model = get_workload(name)
            params = resolved_params(model, preset, None, None)
            for dtype in ("fp32", "bf16"):
                steps = fidelity_steps(preset)
                base = train_baseline(model, dtype, preset, params, 0, steps, "cpu:fp32")
                for device in FAULTS:
                    r = check_fidelity(
                        device, model, dtype, preset, determinism=False, baseline=base
                    )
                    print(
                        f"| {preset} | {name} | {dtype} | {device} | {r.verdict} | "
                        f"{r.max_rel_loss_deviation or 0:.3g} | {r.final_loss_deviation or 0:.3g}"
                        f" | {'; '.join(r.reasons)[:160]} |",
                        flush=True,
                    )


def main() -> None:
    argv = sys.argv[1:]
    run_faults = "--faults" in argv
    argv = [a for a in argv if a != "--faults"]
    against_fp32 = collect(argv, "cpu:fp32")
    without_dtype = [
        a for i, a in enumerate(argv) if a != "--dtype" and (i == 0 or argv[i - 1] != "--dtype")
    ]
    against_fp64 = collect([*without_dtype, "--dtype", "fp32"], "cpu:fp64")
    derive(against_fp32, against_fp64)
    if run_faults:
        args = parser("faults").parse_args(argv)
        faults(args.preset.split(","), args.workload.split(","))


if __name__ == "__main__":
    main()
