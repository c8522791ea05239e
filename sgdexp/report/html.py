"""One self-contained `report.html`: tables and figures (embedded as base64 PNG), no network, no scripts."""
from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

HEAD = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:3px 7px;text-align:right}} th{{background:#f3f3f3}}
td.l,th.l{{text-align:left}} tr.bad td{{background:#fde8e8}}
img{{max-width:100%;border:1px solid #eee;margin:0.5em 0}} code{{background:#f5f5f5;padding:1px 3px}}
</style></head><body>
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def table(columns: Sequence[str], rows: List[Sequence[Any]], left: int = 0, bad: Sequence[bool] = ()) -> str:
    """An HTML table; the first `left` columns are text (left-aligned); rows flagged `bad` are shaded."""
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{esc(c)}</th>" for i, c in enumerate(columns))
    body = []
    for j, row in enumerate(rows):
        shade = ' class="bad"' if j < len(bad) and bad[j] else ""
        cells = "".join(f"<td{cls(i)}>{c if isinstance(c, Markup) else esc(fmt(c))}</td>" for i, c in enumerate(row))
        body.append(f"<tr{shade}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>\n"


class Markup(str):
    """HTML that `table` inserts as is (a link)."""


def link(target: Path, base: Path, text: str) -> Markup:
    """A relative link to a file that exists, else the bare text (the report never points at nothing)."""
    if not target.exists():
        return Markup(esc(text))
    return Markup(f'<a href="{esc(os.path.relpath(target, base))}">{esc(text)}</a>')


def image(png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    return f'<img alt="{esc(png.stem)}" src="data:image/png;base64,{data}">\n'


def page(title: str, sections: List[tuple[str, str]], intro: Optional[str] = None) -> str:
    parts = [HEAD.format(title=esc(title)), f"<h1>{esc(title)}</h1>\n"]
    if intro:
        parts.append(f"<p>{intro}</p>\n")
    for heading, body in sections:
        parts.append(f"<h2>{esc(heading)}</h2>\n{body}")
    parts.append("</body></html>\n")
    return "".join(parts)


def key_values(values: Dict[str, Any]) -> str:
    return table(["key", "value"], [[k, v] for k, v in values.items()], left=1)
