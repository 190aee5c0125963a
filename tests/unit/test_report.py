"""The report from synthetic runs of two systems: sections, figures, escaping."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report.build import write_report
from harness.report.mpl import literal_figure, plot_text
from harness.report.render import md_escape
from harness.results.schema import PhaseBreakdown
from tests.run_records import HOSTILE, failed_case, fidelity, record

_BORDER = re.compile(r"(?<!\\)\|")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_h2 = tag == "h2"
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_h2 = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_h2:
            self.headings.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    cpu = record(
        "cpu",
        f"Xeon {HOSTILE}",
        label=HOSTILE,
        checks=[fidelity("mlp", "cpu"), fidelity("gpt", "cpu", drift=1e-3)],
    )
    npu = record(
        "npu",
        "Ascend 910B",
        train_slowdown=5.0,
        offset_s=60,
        checks=[fidelity("mlp", "npu", "fail", nan_at=7)],
        extra_cases=[failed_case("mlp", "train", "crash", f"killed by SIGSEGV {HOSTILE}")],
    )
    (mlp_train,) = [c for c in npu.cases if c.key.id == "mlp/train/fp32/b8/small"]
    mlp_train.phases = PhaseBreakdown(
        phases_s={"forward": 0.01, "backward": 0.12, "optimizer": 0.015, "zero_grad": 0.001},
        step_s=0.15,
        coverage=0.97,
        iterations=10,
        optimizer_bytes=7 * 4 * 1e6,
        optimizer_bytes_note=f"AdamW {HOSTILE}",
    )
    for number, result in enumerate(cpu.cases):  # readings within 2% of each other
        steps = [(number + r) % 5 for r in range(5)]
        result.yardstick = {"train": [300e-6 * (1.0 + 0.004 * step) for step in steps]}
    for result in npu.cases:  # the machine spent two of five rounds 1.5x slower
        result.yardstick = {"dispatch": [1e-4] * 5, "train": [3e-4, 3e-4, 4.5e-4, 3e-4, 4.5e-4]}
    write_report([cpu, npu], out, warnings=[f"skipped {HOSTILE}.json: not JSON"])
    return out


SECTIONS = [
    "Verdict",
    "Systems",
    "Training vs inference",
    "Where the training step's time goes",
    "MFU per mode",
    "Peak memory",
    "Training fidelity",
    "LLM prefill vs decode on the roofline",
    "Notes",
]
FIGURES = ["throughput", "penalty", "phases", "mfu", "memory", "loss_curves", "roofline"]


def test_html_parses_has_every_section_and_embeds_every_figure(report: Path) -> None:
    page = _Page()
    page.feed((report / "report.html").read_text())
    assert page.headings == SECTIONS
    assert "script" not in page.tags
    assert len(page.images) == len(FIGURES)
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix) :]).startswith(b"\x89PNG\r\n\x1a\n")
    text = "".join(page.text)
    assert HOSTILE in text  # shown as text, not markup
    assert "cpu / Xeon" in text and "npu / Ascend 910B" in text
    assert "not ready" in text and "ready" in text


def test_html_escapes_hostile_text(report: Path) -> None:
    html = (report / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|**x**" in html


def test_markdown_has_every_section_links_figures_and_escapes(report: Path) -> None:
    md = (report / "report.md").read_text()
    for title in SECTIONS:
        assert f"\n## {title}\n" in md
    for name in FIGURES:
        assert f"(figures/{name}.png)" in md
        assert (report / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert "<script>" not in md and "|**x**" not in md
    assert r"\<script\>alert(1)\</script\>\|\*\*x\*\*" in md
    # hostile pipes never add a column: every row has as many cell borders as its header
    lines = md.splitlines()
    tables = [i for i, line in enumerate(lines) if line.startswith("|---")]
    assert len(tables) >= 8
    for sep in tables:
        expected = len(_BORDER.findall(lines[sep - 1]))
        row = sep + 1
        while row < len(lines) and lines[row].startswith("|"):
            assert len(_BORDER.findall(lines[row])) == expected, lines[row]
            row += 1


def test_escapers_and_plot_text() -> None:
    assert md_escape("a_b *c* [d](e) <f> `g` #h") == r"a\_b \*c\* \[d\](e) \<f\> \`g\` \#h"
    assert md_escape("- item") == r"\- item" and md_escape("1. x") == r"1\. x"
    assert md_escape("- item", in_cell=True) == "- item"
    assert plot_text("$x^2$\n cost") == "$x^2$ cost"
    assert len(plot_text("a" * 100, limit=20)) == 20


def test_figure_text_is_drawn_literally_not_as_mathtext() -> None:
    """`$\\frac$` is an error as mathtext; drawn literally, the figure saves."""
    with literal_figure() as fig:
        fig.add_subplot().set_title(r"$\frac$ and $x^2$")
        fig.savefig(io.BytesIO(), format="png")


def test_histories_follow_a_case_across_workload_versions() -> None:
    from harness.report.plots import case_histories

    old = record("cpu", "Xeon")
    new = record("cpu", "Xeon", offset_s=60)
    for c in new.cases:
        c.key = c.key.model_copy(update={"workload_version": "2"})
    histories = case_histories([old, new])
    assert len(histories) == len(old.cases)
    assert all(len(h.points) == 2 for h in histories)
    gpt_train = [h for h in histories if h.title.startswith("gpt/train/")]
    assert len(gpt_train) == 1 and "[" in gpt_train[0].title


def test_the_phase_section_says_where_the_excess_goes(report: Path) -> None:
    md = (report / "report.md").read_text()
    (line,) = [x for x in md.splitlines() if x.startswith("npu / Ascend 910B, mlp")]
    assert "most of the excess goes to backward" in line
    assert "backward takes 12.00x the forward against a FLOP ratio of 2.00" in line


def test_systems_say_how_steady_the_machine_was_by_the_yardsticks(report: Path) -> None:
    markdown = " ".join((report / "report.md").read_text().split())
    assert "machine steady: yardsticks within 2% (p90/p10)" in markdown
    assert "machine moved: train yardstick 1.50x (p90/p10)" in markdown


def test_log_axis_ticks_are_plain_numbers_not_mathtext_in_the_fidelity_panel() -> None:
    """The fidelity figure's deviation panel (log scale) as a user sees it in an SVG: text
    kept as text, so any mathtext tick label would show as `$\\mathdefault{10^{-3}}$`."""
    import matplotlib

    from harness.report.figures import _deviation_panel
    from harness.results.fidelity_judge import rejudge

    check = rejudge(fidelity("mlp", "cpu", drift=1e-3))
    with literal_figure() as fig, matplotlib.rc_context({"svg.fonttype": "none"}):
        ax = fig.add_subplot(1, 1, 1)
        _deviation_panel(ax, check)
        svg = io.StringIO()
        fig.savefig(svg, format="svg")
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and not any("$" in label or "mathdefault" in label for label in labels)
    assert "mathdefault" not in svg.getvalue()
    assert any(re.fullmatch(r"[0-9.e+-]+", label) for label in labels), labels
