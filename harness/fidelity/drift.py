"""Measure the honest drift that fidelity bands are built from (docs/fidelity.md).

    python -m harness.fidelity.drift [--preset tiny,small] [--workload mlp,gpt,convnet]
        [--dtype fp32,bf16,fp16] [--reference cpu:fp32] [--seeds 0] [--steps N]

For each registered fidelity workload, preset and seed it trains the reference once and the
honest run of each dtype (the dtype on the reference device; the reference itself for fp32
against cpu:fp32), and prints the honest run's deviations from the reference over the compared
window: at step 0 (one step of rounding: what the floors cover) and the largest (what k
multiplies), for the loss, the global gradient norm and each parameter group, with the pass
band this gives at the last compared step. Run it on a GPU or NPU host (`--reference` stays
the CPU) to see how that device's own low-precision arithmetic compares.
"""

from __future__ import annotations

import argparse
import time

from harness.fidelity.check import (
    BAND_FLOORS,
    BAND_K,
    COMPARE_STEPS,
    FIDELITY_WORKLOADS,
    deviation_scales,
    fidelity_steps,
    honest_trajectory,
    median_abs,
    parse_reference,
    resolved_params,
    running_max,
    step_deviations,
    train_trajectory,
)
from workloads.registry import all_workloads, get_workload


def _drift(
    target: list[float | None], reference: list[float | None], scale: float | None, n: int
) -> tuple[float, float]:
    """The running max of |target - reference| / scale at step 0 and at the window's end."""
    top = running_max(step_deviations(target, reference, scale, n))
    return (top[0] if top else 0.0), (top[-1] if top else 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny,small")
    parser.add_argument("--workload", default=",".join(FIDELITY_WORKLOADS))
    parser.add_argument("--dtype", default="fp32,bf16,fp16")
    parser.add_argument("--reference", default="cpu:fp32", help="cpu:fp32 or cpu:fp64")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (spread of drift)")
    parser.add_argument("--steps", type=int, default=None, help="default: by preset")
    args = parser.parse_args(argv)
    ref_backend, ref_dtype = parse_reference(args.reference)
    known = all_workloads()
    print(
        "| workload | preset | seed | honest | loss drift step 0 | loss drift max | "
        "grad-norm drift step 0 | grad-norm drift max | group grad-norm drift max | "
        "pass band at the end (loss / grad norm) | fp16 skipped | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in [w for w in args.workload.split(",") if w in known]:
        model = get_workload(name)
        for preset in args.preset.split(","):
            params = resolved_params(model, preset, None, None)
            steps = fidelity_steps(preset, args.steps)
            n = min(steps, COMPARE_STEPS)
            for seed in (int(s) for s in args.seeds.split(",")):
                ref = train_trajectory(ref_backend, model, ref_dtype, preset, params, seed, steps)
                loss_scale, norm_scale = deviation_scales(ref.loss, ref.grad_norm)
                for dtype in args.dtype.split(","):
                    start = time.perf_counter()
                    honest = honest_trajectory(
                        model, dtype, preset, params, seed, steps, args.reference, ref
                    )
                    window = min([n, *honest.skipped_steps[:1]])
                    loss0, loss = _drift(honest.loss, ref.loss, loss_scale, window)
                    norm0, norm = _drift(honest.grad_norm, ref.grad_norm, norm_scale, window)
                    groups = ", ".join(
                        f"{group} {_drift(values, base, median_abs(base), window)[1]:.3g}"
                        for group, values in honest.group_grad_norm.items()
                        if (base := ref.group_grad_norm.get(group))
                    )
                    floor = BAND_FLOORS.get(dtype, BAND_FLOORS["fp32"])
                    print(
                        f"| {name} | {preset} | {seed} | {args.reference.split(':')[0]}:{dtype} "
                        f"| {loss0:.3g} | {loss:.3g} | {norm0:.3g} | {norm:.3g} | {groups} | "
                        f"{BAND_K * loss + floor.loss:.3g} / {BAND_K * norm + floor.grad_norm:.3g} "
                        f"| {len(honest.skipped_steps)} | {time.perf_counter() - start:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
