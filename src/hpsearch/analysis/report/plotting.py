"""Plotly figures as plain JSON-ready dicts, and the helpers the figures share.

A :data:`Figure` is ``{"data": [trace, ...], "layout": {...}}``, what plotly.js draws. The report and the
dashboard write these dicts directly instead of building plotly's graph objects: validating every point of a
10,000-trial study took about a second, and plotly.js needs none of it. What the validation used to add is
added here (the template as an object, named colorscales spelled out), and tests/analysis/test_figures.py
checks each figure is exactly what plotly's validation makes of it.

Example::

    >>> figure = figure_layout([{"type": "scatter", "x": [1, 2], "y": [0.5, 0.7]}], 300, xaxis=title("epoch"))
    >>> figure_json(figure)[:9]
    '{"data":['
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from functools import cache
from typing import Any

Figure = dict[str, Any]  # {"data": [trace, ...], "layout": {...}}: what plotly.js draws


@cache
def _template() -> dict[str, Any]:
    """plotly's "plotly_white" template as JSON (plotly.js takes templates as objects, not names); read once
    and shared by every figure (never modified)."""
    import plotly.io as pio

    return dict(pio.templates["plotly_white"].to_plotly_json())


@cache
def colorscale(name: str) -> list[Any]:
    """A named colorscale spelled out as plotly's Python side does (plotly.js's own "Blues" differs).
    Example: ``colorscale("Blues")[0]`` is ``(0.0, "rgb(247,251,255)")``."""
    import plotly.graph_objects as go

    return list(go.Heatmap(colorscale=name).to_plotly_json()["colorscale"])


def figure_json(figure: Figure) -> str:
    """A figure as plotly's JSON: compact, with "<", ">" and "/" written as \\u escapes (so no string can close
    a <script>), datetimes as ISO strings, non-finite numbers as null.

    Example: ``figure_json({"data": [], "layout": {}})`` is ``'{"data":[],"layout":{}}'``.
    """
    from plotly.io.json import to_json_plotly

    return str(to_json_plotly(figure))


def title(text: str) -> dict[str, Any]:
    """An axis title. Example: ``{"xaxis": title("epoch")}``."""
    return {"title": {"text": text}}


def plotly_text(value: object) -> str:
    """Escape a user string for plotly, which renders its text as a small HTML dialect (tags like <b>, <br>,
    <a>) and decodes &lt; &gt; &amp; (but not &quot;), so the reader sees the original characters.

    Example: ``plotly_text("<b>")`` is ``"&lt;b&gt;"``.
    """
    return html.escape(str(value), quote=False)


SIGNIFICANT = 4  # digits of every float that analysis shows a person (the exports keep full precision)


def fmt(value: object) -> str:
    """A value as analysis shows it (report, dashboard, figure labels and hover): a float to 4 significant
    digits, trailing zeros dropped, in plain notation from 1e-4 to 1e9 (a duration of 12345.6 s is "12350",
    not "1.235e+04") and scientific outside it; anything else as ``str``. The dashboard's script formats
    the same way (``fmt`` in static/dashboard.js).

    Example: ``fmt(1 / 3)`` is ``"0.3333"``; ``fmt(0.5)`` is ``"0.5"``; ``fmt(2.5e-05)`` is ``"2.5e-05"``;
    ``fmt(3)`` is ``"3"``."""
    if not isinstance(value, float):
        return str(value)
    # Plain from 1e-4 to 1e4, and "nan", "inf": the common case (hover text of every point), kept cheap.
    rounded = f"{value:.{SIGNIFICANT}g}"
    if "e" not in rounded:
        return "0" if rounded == "-0" else rounded
    if not 1e-4 <= abs(float(rounded)) < 1e9:
        return rounded
    text = repr(float(rounded))  # 1e4 to 1e9: the shortest text of the rounded value, plain in this range
    return text[:-2] if text.endswith(".0") else text


def integer_step(low: float, high: float, count: int = 10) -> int:
    """The tick step for integer data over [low, high]: 1, 2 or 5 times a power of ten (never below 1), giving
    at most about ``count`` ticks. Example: ``integer_step(0, 3)`` is ``1``; ``integer_step(16, 512)`` is ``50``."""
    raw = (high - low) / count
    if raw <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(raw))
    return int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def integer_ticks(low: float, high: float, log: bool = False) -> list[int]:
    """Whole-number tick values within [low, high]: multiples of :func:`integer_step`, or on a log axis 1, 2
    and 5 times powers of ten (powers of ten alone over more than three decades), always at least the ends.

    Example: ``integer_ticks(1, 3)`` is ``[1, 2, 3]``; ``integer_ticks(16, 512, log=True)`` is
    ``[20, 50, 100, 200, 500]``."""
    if high < low:
        low, high = high, low
    if not log:
        step = integer_step(low, high)
        first = math.ceil(low / step) * step
        ticks = list(range(int(first), math.floor(high) + 1, step))
    else:
        top = max(high, 1.0)
        mantissas = (1,) if math.log10(top) - math.log10(max(low, 1.0)) > 3 else (1, 2, 5)
        ticks = [m * 10**k for k in range(math.floor(math.log10(top)) + 1) for m in mantissas]
        ticks = [t for t in ticks if low <= t <= high]
    if len(ticks) < 2:  # a narrow range: its own ends (rounded inwards)
        ticks = sorted({math.ceil(low), math.floor(high)} | set(ticks))
        ticks = [t for t in ticks if low <= t <= high] or [round(low)]
    return ticks


def integer_axis(values: Iterable[float | None]) -> dict[str, Any]:
    """Axis settings that put ticks on whole numbers only, for integer data on a linear axis (epochs, trial
    numbers, integer parameters): plotly's automatic ticks go down to 0.5 or 0.2 over a short range.

    Example: ``integer_axis([1, 2, 3])`` is ``{"tick0": 0, "dtick": 1}``."""
    present = [v for v in values if v is not None]
    if not present:
        return {}
    return {"tick0": 0, "dtick": integer_step(min(present), max(present))}


def figure_layout(traces: list[dict[str, Any]], height: int, **layout: Any) -> Figure:
    """A figure of ``traces`` in the report's style (plotly_white, default margins) with ``layout`` on top.
    Example: ``figure_layout([{"type": "bar", "x": [1], "y": ["a"]}], 200, xaxis={"range": [0, 1]})``."""
    layout.setdefault("margin", {"l": 70, "r": 30, "t": 30, "b": 50})
    return {"data": traces, "layout": {"template": _template(), "height": height, **layout}}
