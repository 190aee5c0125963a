"""Measure the honest drift that fidelity bands are built from (docs/fidelity.md).

    python -m harness.fidelity.drift [--preset tiny,small] [--workload mlp,gpt,convnet]
        [--dtype fp32,bf16,fp16] [--reference cpu:fp32] [--seeds 0] [--steps N]

For each registered fidelity workload, preset and seed it trains the reference once and the
honest run of each dtype (the dtype on the reference device; the reference itself for fp32
against cpu:fp32), and prints the honest run's deviations from the reference, on the judge's
scales (loss x the reference's loss at the step, gradient norms x its median): over the
compared window at step 0 (one step of rounding: what the floors cover) and the largest (what
k multiplies), for the loss, the global gradient norm and each parameter group; the final
loss (x the reference's final loss); and the pass band this gives at the last compared step.
Run it on a GPU or NPU host (`--reference` stays the CPU) to see how that device's own
low-precision arithmetic compares. tests/perf/derive_fidelity_floors.py derives the floors
from these rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

from pydantic import BaseModel

from harness.fidelity.trajectory import (
    honest_trajectory,
    parse_reference,
    resolved_params,
    train_trajectory,
)
from harness.results.fidelity import (
    BAND_FLOORS,
    BAND_K,
    COMPARE_STEPS,
    FIDELITY_WORKLOADS,
    fidelity_steps,
)
from harness.results.fidelity_judge import (
    final_deviation,
    loss_deviations,
    norm_deviations,
    running_max,
)
from workloads.registry import all_workloads, get_workload


class DriftRow(BaseModel):
    """The honest run of one (workload, preset, seed, dtype) against the reference."""

    workload: str
    preset: str
    seed: int
    honest: str
    dtype: str
    loss_step0: float
    loss_max: float
    grad_norm_step0: float
    grad_norm_max: float
    group_max: dict[str, float]
    final_loss: float | None
    skipped: int
    seconds: float


def _drift(deviations: list[float | None]) -> tuple[float, float]:
    """The running max of the deviations at step 0 and at the window's end."""
    top = running_max(deviations)
    return (top[0] if top else 0.0), (top[-1] if top else 0.0)


def survey(
    workloads: list[str],
    presets: list[str],
    dtypes: list[str],
    reference: str = "cpu:fp32",
    seeds: list[int] | None = None,
    steps: int | None = None,
) -> Iterator[DriftRow]:
    """One DriftRow per registered workload, preset, seed and dtype, as each is trained."""
    ref_backend, ref_dtype = parse_reference(reference)
    known = all_workloads()
    for name in [w for w in workloads if w in known]:
        model = get_workload(name)
        for preset in presets:
            params = resolved_params(model, preset, None, None)
            n_steps = fidelity_steps(preset, steps)
            n = min(n_steps, COMPARE_STEPS)
            for seed in seeds or [0]:
                ref = train_trajectory(ref_backend, model, ref_dtype, preset, params, seed, n_steps)
                for dtype in dtypes:
                    start = time.perf_counter()
                    honest = honest_trajectory(
                        model, dtype, preset, params, seed, n_steps, reference, ref
                    )
                    window = min([n, *honest.skipped_steps[:1]])
                    loss0, loss = _drift(loss_deviations(honest.loss, ref.loss, window))
                    norm0, norm = _drift(norm_deviations(honest.grad_norm, ref.grad_norm, window))
                    groups = {
                        group: _drift(norm_deviations(values, base, window))[1]
                        for group, values in honest.group_grad_norm.items()
                        if (base := ref.group_grad_norm.get(group))
                    }
                    yield DriftRow(
                        workload=name,
                        preset=preset,
                        seed=seed,
                        honest=f"{reference.split(':')[0]}:{dtype}",
                        dtype=dtype,
                        loss_step0=loss0,
                        loss_max=loss,
                        grad_norm_step0=norm0,
                        grad_norm_max=norm,
                        group_max=groups,
                        final_loss=final_deviation(honest.loss, ref.loss),
                        skipped=len(honest.skipped_steps),
                        seconds=time.perf_counter() - start,
                    )


HEADER = (
    "| workload | preset | seed | honest | loss drift step 0 | loss drift max | "
    "grad-norm drift step 0 | grad-norm drift max | group grad-norm drift max | "
    "final loss drift | pass band at the end (loss / grad norm) | fp16 skipped | seconds |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def row_text(row: DriftRow) -> str:
    """One markdown table row of HEADER."""
    floor = BAND_FLOORS.get(row.dtype, BAND_FLOORS["fp32"])
    groups = ", ".join(f"{g} {v:.3g}" for g, v in row.group_max.items())
    final = "-" if row.final_loss is None else f"{row.final_loss:.3g}"
    return (
        f"| {row.workload} | {row.preset} | {row.seed} | {row.honest} | {row.loss_step0:.3g} "
        f"| {row.loss_max:.3g} | {row.grad_norm_step0:.3g} | {row.grad_norm_max:.3g} | "
        f"{groups} | {final} | {BAND_K * row.loss_max + floor.loss:.3g} / "
        f"{BAND_K * row.grad_norm_max + floor.grad_norm:.3g} | {row.skipped} | "
        f"{row.seconds:.1f} |"
    )


def parser(description: str) -> argparse.ArgumentParser:
    """The survey's options (shared with tests/perf/derive_fidelity_floors.py)."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--preset", default="tiny,small")
    out.add_argument("--workload", default=",".join(FIDELITY_WORKLOADS))
    out.add_argument("--dtype", default="fp32,bf16,fp16")
    out.add_argument("--reference", default="cpu:fp32", help="cpu:fp32 or cpu:fp64")
    out.add_argument("--seeds", default="0", help="comma-separated seeds (spread of drift)")
    out.add_argument("--steps", type=int, default=None, help="default: by preset")
    return out


def survey_from(args: argparse.Namespace) -> Iterator[DriftRow]:
    """`survey` with the options of `parser`."""
    return survey(
        args.workload.split(","),
        args.preset.split(","),
        args.dtype.split(","),
        args.reference,
        [int(s) for s in args.seeds.split(",")],
        args.steps,
    )


def main(argv: list[str] | None = None, emit: Callable[[str], None] | None = None) -> None:
    args = parser((__doc__ or "").splitlines()[0]).parse_args(argv)
    out = emit or (lambda line: print(line, flush=True))
    out(HEADER)
    for row in survey_from(args):
        out(row_text(row))


if __name__ == "__main__":
    main()
