"""matplotlib set-up shared by the report's figures and `bench plot`.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`, never pyplot), so
nothing depends on, or changes, the process's interactive backend: saving to PNG or SVG uses
matplotlib's own Agg and SVG renderers. Text from results files (names, labels, units) is
drawn literally: every figure is built and saved with mathtext off (`text.parse_math`), so a
`$x$` or `$\\frac$` in a name is shown as written instead of being parsed (an unbalanced or
unknown TeX command would otherwise abort the figure).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LITERAL_TEXT = {"text.parse_math": False}
"""rcParams under which every figure here is built and saved."""


@contextmanager
def literal_figure(**kwargs: Any) -> Iterator[Figure]:
    """A new constrained-layout figure (`kwargs` go to `Figure`), with mathtext off for every
    text created or drawn inside the block. Save it inside the block."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(LITERAL_TEXT):
        yield Figure(layout="constrained", **kwargs)


def plot_text(text: str, limit: int = 60) -> str:
    """Results text on one line and at most `limit` characters (both ends kept: system names
    lead, dtype and batch close). Draw it inside `literal_figure`, which keeps it literal."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        head = (limit - 1) // 2
        flat = flat[:head] + "…" + flat[len(flat) - (limit - 1 - head) :]
    return flat


def log_axes(ax: Any) -> None:
    """Log scales on both axes with plain-number tick labels (1, 2, 5 per decade)."""
    log_axis(ax, "x", subs=(1.0, 2.0, 5.0))
    log_axis(ax, "y", subs=(1.0, 2.0, 5.0))


def log_axis(ax: Any, which: str, subs: tuple[float, ...] = (1.0,)) -> None:
    """A log scale on one axis (`x` or `y`) with plain-number tick labels (`0.001`, `1e-06`)
    at `subs` x each power of ten: the default labels are mathtext
    (`$\\mathdefault{10^{-3}}$`), which `literal_figure` would print as written. Every log
    axis of a figure goes through here."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(subs=subs, numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())
