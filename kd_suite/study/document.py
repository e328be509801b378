"""A small document model rendered twice: GitHub Markdown (images linked) and self-contained HTML (images embedded).

The report is a list of blocks (headings, paragraphs, bullet lists, tables, images) holding plain text; each renderer
escapes what its format needs, so both files carry the same content.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.88em; }
th, td { border: 1px solid #d0d7de; padding: .35em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfcfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
div.wide { overflow-x: auto; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 0.88em; color: #57606a; margin-top: .3em; }
p.meta { color: #57606a; }
"""


@dataclass
class Heading:
    """A section title; ``level`` 1 is the document title."""

    text: str
    level: int = 2


@dataclass
class Paragraph:
    """Plain text; ``meta`` paragraphs are shown muted in HTML."""

    text: str
    meta: bool = False


@dataclass
class Bullets:
    """A bullet list of plain-text items."""

    items: list[str]


@dataclass
class Table:
    """A table of plain-text cells; ``numeric`` marks the columns aligned right in HTML."""

    headers: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)


@dataclass
class Image:
    """A picture file with its caption and a short alternative text."""

    path: Path
    caption: str
    alt: str = ""


Block = Heading | Paragraph | Bullets | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_link(path: Path, base: Path) -> str:
    try:
        target = Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        target = path.as_posix()
    return f"<{target}>" if " " in target else target


def to_markdown(blocks: list[Block], base: Path) -> str:
    """GitHub Markdown; images as links relative to ``base`` (the folder of the ``.md`` file)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Paragraph):
            out.append(f"_{b.text}_" if b.meta else b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in b.headers) + " |"]
            lines.append("|" + "|".join("---:" if i in b.numeric else "---" for i in range(len(b.headers))) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Image):
            out.append(f"![{_md_cell(b.alt or b.path.stem)}]({_md_link(b.path, base)})\n\n{b.caption}")
    return "\n\n".join(out) + "\n"


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI (base64), so the HTML needs no other file."""
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page: inline CSS, every image embedded as base64."""
    esc = html.escape
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f'<p class="meta">{esc(b.text)}</p>' if b.meta else f"<p>{esc(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>"
                + "".join(
                    f'<td class="num">{esc(c)}</td>' if i in b.numeric else f"<td>{esc(c)}</td>"
                    for i, c in enumerate(row)
                )
                + "</tr>"
                for row in b.rows
            )
            body.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
        elif isinstance(b, Image):
            body.append(
                f'<figure><img src="{data_uri(b.path)}" alt="{esc(b.alt or b.path.stem, quote=True)}">'
                f"<figcaption>{esc(b.caption)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
