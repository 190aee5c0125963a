"""Render a report (sections of plain-text tables, paragraphs and figures) as Markdown and as
self-contained HTML. Every piece of text is escaped here, at render time: nothing that comes
from a results file (labels, device names, errors, workload names) can become markup."""

from __future__ import annotations

import base64
import html
import re

from pydantic import BaseModel, Field

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~&$])")
_MD_LINE_START = re.compile(r"^(\s*(?:\d+)?)([-+=.)])")


def md_escape(text: str, *, in_cell: bool = False) -> str:
    """Text safe inside Markdown (and a Markdown table cell): the characters Markdown or
    inline HTML could interpret (emphasis, code, links, tags, entities, table pipes,
    headings) are backslash-escaped, as is a leading list marker outside table cells;
    newlines become spaces."""
    flat = " ".join(str(text).splitlines())
    escaped = _MD_SPECIAL.sub(r"\\\1", flat)
    if in_cell:
        return escaped
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def html_escape(text: str) -> str:
    """Text safe inside HTML elements and attribute values."""
    return html.escape(str(text), quote=True)


class Table(BaseModel):
    """A table of plain-text cells (escaped when rendered)."""

    columns: list[str]
    rows: list[list[str]] = Field(default_factory=list)


class Figure(BaseModel):
    """A PNG figure: stored beside report.md, embedded as base64 in report.html."""

    name: str
    """File name, e.g. `roofline.png` (made by the report, never from results text)."""
    caption: str
    png: bytes


class Section(BaseModel):
    title: str
    paragraphs: list[str] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)


class Report(BaseModel):
    title: str
    sections: list[Section]


def render_markdown(report: Report, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are linked as `figure_dir/<name>`."""
    out = [f"# {md_escape(report.title)}", ""]
    for section in report.sections:
        out += [f"## {md_escape(section.title)}", ""]
        for paragraph in section.paragraphs:
            out += [md_escape(paragraph), ""]
        for table in section.tables:
            out.append("| " + " | ".join(md_escape(c, in_cell=True) for c in table.columns) + " |")
            out.append("|" + "---|" * len(table.columns))
            for row in table.rows:
                out.append("| " + " | ".join(md_escape(c, in_cell=True) for c in row) + " |")
            out.append("")
        for figure in section.figures:
            out += [f"![{md_escape(figure.caption)}]({figure_dir}/{figure.name})", ""]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
"""


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (figures inlined as base64 PNG, no
    scripts, no external resources)."""
    title = html_escape(report.title)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    for section in report.sections:
        out.append(f"<section><h2>{html_escape(section.title)}</h2>")
        for paragraph in section.paragraphs:
            out.append(f"<p>{html_escape(paragraph)}</p>")
        for table in section.tables:
            out.append('<div class="scroll"><table><thead><tr>')
            out += [f"<th>{html_escape(c)}</th>" for c in table.columns]
            out.append("</tr></thead><tbody>")
            for row in table.rows:
                out.append("<tr>" + "".join(f"<td>{html_escape(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table></div>")
        for figure in section.figures:
            data = base64.b64encode(figure.png).decode("ascii")
            caption = html_escape(figure.caption)
            out.append(
                f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
