"""A report as a list of blocks, rendered to Markdown or to a standalone HTML page.

Blocks: :class:`Heading`, :class:`Paragraph`, :class:`Bullets`, :class:`Table`, :class:`Image`.  Table cells are strings;
a :class:`Strong` string is shown bold (the best arm of a row).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

FORMATS: dict[str, str] = {"markdown": "report.md", "html": "report.html"}
"""Report formats and the file each writes."""

FORMAT_ALIASES: dict[str, str] = {"md": "markdown"}
"""Other accepted spellings of a format name (the CLI shows only the names of :data:`FORMATS`)."""


class Strong(str):
    """A table cell shown in bold."""


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of one-line items (the report's verdicts)."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    title: str
    path: str  # relative to the report file


Block = Heading | Paragraph | Bullets | Table | Image


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(b.header) + " |", "|" + "|".join("---" for _ in b.header) + "|"]
            for row in b.rows:
                cells = [c.replace("|", "\\|") for c in row]
                cells = [f"**{t}**" if isinstance(c, Strong) and c else t for c, t in zip(row, cells)]
                lines.append("| " + " | ".join(cells) + " |")
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            out.append(f"![{b.title}]({b.path})")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
code{background:#f6f6f6;padding:0 3px}
"""


def _inline(text: str) -> str:
    """Escape, then show ``code`` spans (the only inline markup the report's paragraphs use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(blocks: Sequence[Block], title: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.header))
            out.append("</tr></thead><tbody>")
            for row in b.rows:
                cells = [
                    f"<td><strong>{html.escape(c)}</strong></td>"
                    if isinstance(c, Strong)
                    else f"<td>{html.escape(c)}</td>"
                    for c in row
                ]
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
        elif isinstance(b, Image):
            t = html.escape(b.title)
            out.append(
                f'<figure><img src="{html.escape(b.path)}" alt="{t}"><figcaption>{t}</figcaption></figure>'
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render(blocks: Sequence[Block], fmt: str, title: str) -> str:
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt == "markdown":
        return to_markdown(blocks)
    if fmt == "html":
        return to_html(blocks, title)
    raise ValueError(f"unknown report format {fmt!r}; valid: {sorted(FORMATS)}")
