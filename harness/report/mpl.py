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
    """Log scales on both axes with plain-number tick labels (1, 2, 5 per decade): the default
    labels are mathtext (`$\\mathdefault{10^{11}}$`), which `literal_figure` would print as
    written."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
