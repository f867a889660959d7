"""The dashboard's HTML: a page is a :class:`View` (sections of escaped HTML and plotly figures as JSON),
rendered whole for the first request and sent as JSON (:func:`live_payload`) to refresh it in place.

The page runs no inline script: ``/static/dashboard.js`` reads the figures from a JSON data island, draws
them with plotly.js (served from the installed plotly package) and polls the page's live URL with
``If-None-Match``. Every user string reaching the HTML passes through :func:`escape`.

Example::

    >>> view = View("Workers", [Section("workers", "Workers", "<p>none</p>")])
    >>> render(view, live_url="/live/workers", etag='"abc"').startswith("<!DOCTYPE html>")
    True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from hpsearch.analysis.report.page import escape
from hpsearch.analysis.report.plotting import fmt

# Scripts and styles from this server only (plotly.js needs eval for its WebGL shaders and inline styles
# for its own elements); no inline script runs, nothing loads from elsewhere, no framing.
CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class Section:
    """One part of a page: a title, escaped HTML, and a plotly figure as JSON drawn above it (or None).
    ``live=False``: rendered once, never replaced (a table the page's script drives itself).

    Example: ``Section("history", "Optimization history", "", figure_json(figure))``."""

    key: str
    title: str
    html: str
    figure: str | None = None
    live: bool = True


@dataclass(frozen=True)
class View:
    """A page: its title (plain text), sections, and breadcrumbs as (href, plain text) pairs.

    Example: ``View("Study mnist", sections, crumbs=[("/", "Studies")])``."""

    title: str
    sections: Sequence[Section]
    crumbs: Sequence[tuple[str, str]] = field(default_factory=list)


def path_of(*segments: str | int) -> str:
    """A URL path whose segments (study names) are percent-encoded, "/" included.

    Example: ``path_of("studies", "a/b", "trials", 3)`` is ``"/studies/a%2Fb/trials/3"``."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


def table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """A table of already-escaped header and body cells. Example: ``table(["a"], [["1"]])``."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def cell(value: object) -> str:
    """A value as a table cell shows it: empty for None, floats to 4 significant digits (:func:`fmt`), escaped.
    Example: ``cell(1 / 3)`` is ``"0.3333"``."""
    return "" if value is None else escape(fmt(value))


def note(text: str) -> str:
    """An escaped note paragraph. Example: ``note("No trial yet.")``."""
    return f'<p class="note">{escape(text)}</p>'


def live_payload(view: View) -> str:
    """The JSON that refreshes a page: each live section's HTML and figure (figures are plotly's JSON,
    spliced in as is). Example: ``json.loads(live_payload(view))["sections"][0]["key"]``."""
    parts = []
    for section in view.sections:
        if not section.live:
            continue
        head = json.dumps({"key": section.key, "title": section.title, "html": section.html})[:-1]
        parts.append(f'{head}, "figure": {section.figure or "null"}}}')
    return '{"title": ' + json.dumps(view.title) + ', "sections": [' + ", ".join(parts) + "]}"


def _data_island(text: str) -> str:
    """JSON made safe inside <script type="application/json">: no "<" (so no "</script>"), no "&"."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render(view: View, live_url: str, etag: str, token_note: str = "", payload: str | None = None) -> str:
    """The whole page. ``live_url`` answers :func:`live_payload` JSON for ``If-None-Match: etag``;
    ``payload``: that JSON when the caller has it already.

    Example: ``render(view, "/live/workers", '"1f"')``."""
    crumbs = " / ".join(f'<a href="{escape(href)}">{escape(text)}</a>' for href, text in view.crumbs)
    sections = []
    for section in view.sections:
        plot = f'<div class="plot" id="f-{section.key}"></div>' if section.live else ""
        sections.append(
            f'<section id="s-{section.key}"><h2>{escape(section.title)}</h2>{plot}'
            f'<div class="body" id="h-{section.key}">{section.html}</div></section>'
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(view.title)} · hpsearch</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/plotly.min.js" defer></script>
<script src="/static/dashboard.js" defer></script>
</head>
<body data-live="{escape(live_url)}" data-etag="{escape(etag)}">
<header><a class="brand" href="/">hpsearch</a> <a href="/">Studies</a> <a href="/workers">Workers</a>
<span id="live-status" class="muted">live</span>{token_note}</header>
<nav class="crumbs">{crumbs}</nav>
<h1>{escape(view.title)}</h1>
<main>
{"".join(sections)}
</main>
<script type="application/json" id="hp-initial">{_data_island(payload or live_payload(view))}</script>
</body>
</html>
"""
