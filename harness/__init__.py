"""accelbench's harness: everything that is neither a device nor a model.

Library use, like `torch.utils.benchmark`:

    from harness import measure
    m = measure(lambda: a @ b)
    print(m.median, m.ci95, m.stable)

    from harness import load_runs
    df = load_runs("results/")  # pandas DataFrame, one row per case per run

    from harness import PhaseTimer, phase  # where your own training step's time goes
    timer = PhaseTimer(backend)
    with timer.step():
        with phase("forward"): ...
        with phase("backward"): ...
    timer.breakdown().phases_s
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str]] = {
    "measure": ("harness.measurement.timing", "measure"),
    "Measurement": ("harness.results.schema", "Measurement"),
    "load_runs": ("harness.results.frame", "load_runs"),
    "compare_runs": ("harness.analysis.compare", "compare_runs"),
    "PhaseTimer": ("harness.measurement.phases", "PhaseTimer"),
    "phase": ("harness.measurement.phases", "phase"),
    "start": ("harness.dispatch", "start"),
}


def __getattr__(name: str) -> Any:
    """Import public names on first use (PEP 562), so `import harness` loads nothing heavy
    and `harness.load_runs` reads results without loading torch."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = list(_LAZY)
