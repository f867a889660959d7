"""The report's plotly figures, built from :class:`~hpsearch.analysis.report.data.ReportData`.

Each ``*_figure`` function returns a :data:`~.plotting.Figure` (a plain dict, ``{"data": [...], "layout": {...}}``, as
plotly.js takes it), or a plain-text note when there is nothing to draw. The dicts are written directly
rather than through plotly's graph objects: their validation of every point cost most of a second for a
study of 10,000 trials, and the tests check each figure validates. Every user string that goes into a
figure passes through :func:`plotly_text`: plotly renders its text as a small HTML dialect, so it gets the
escaped form and shows the original characters.

Example::

    >>> figure = history_figure(load_report_data(store, "mnist_mlp"))
    >>> [trace["name"] for trace in figure["data"]]
    ['completed trial', 'best so far']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from hpsearch.analysis.report.data import Axis, ReportData, TrialInfo, class_label_names
from hpsearch.analysis.report.plotting import (
    Figure,
    colorscale,
    figure_layout,
    fmt,
    integer_axis,
    integer_ticks,
    plotly_text,
    title,
)

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
_STATE_COLORS = {
    "COMPLETED": "#2ca02c",
    "PRUNED": "#ff7f0e",
    "FAILED": "#d62728",
    "LOST": "#9467bd",
    "RELEASED": "#7f7f7f",
    "RUNNING": "#1f77b4",
    "QUEUED": "#bbbbbb",
}
_INACTIVE = "(inactive)"
_SLICE_PARAMS = 3
_plotly_name = cache(plotly_text)  # parameter names: a few, each escaped once


def _hover(trial: TrialInfo, extra: str = "") -> str:
    # Numbers and booleans have nothing to escape (this runs for every point of a 10,000-trial study).
    params = "<br>".join(
        f"{_plotly_name(k)} = {fmt(v) if type(v) in (int, float, bool) else plotly_text(fmt(v))}"
        for k, v in trial.params.items()
    )
    return f"trial #{trial.number}{extra}<br>{params}"


def history_figure(data: ReportData) -> Figure | str:
    """Each completed trial's objective by trial number, the best so far as a step line, pruned trials in
    grey. Example: ``history_figure(data)``."""
    completed = data.completed
    if not completed:
        return "No completed trial yet."
    objective = plotly_text(data.study.objective_name)
    traces = []
    pruned = [t for t in data.trials if t.state == "PRUNED" and t.objective is not None]
    if pruned:
        traces.append(
            {
                "type": "scatter",
                "x": [t.number for t in pruned],
                "y": [t.objective for t in pruned],
                "mode": "markers",
                "name": "pruned",
                "marker": {"color": "#bbbbbb", "size": 7},
                "hovertext": [_hover(t, " (pruned)") for t in pruned],
                "hoverinfo": "text",
            }
        )
    traces.append(
        {
            "type": "scatter",
            "x": [t.number for t in completed],
            "y": [t.objective for t in completed],
            "mode": "markers",
            "name": "completed trial",
            "marker": {"color": _COLORS[0], "size": 8},
            "hovertext": [_hover(t, f": {fmt(t.objective)}") for t in completed],
            "hoverinfo": "text",
        }
    )
    best: list[float] = []
    for trial in completed:
        assert trial.objective is not None
        better = not best or (trial.objective > best[-1] if data.maximize else trial.objective < best[-1])
        best.append(trial.objective if better else best[-1])
    traces.append(
        {
            "type": "scatter",
            "x": [t.number for t in completed],
            "y": best,
            "mode": "lines",
            "name": "best so far",
            "line": {"color": _COLORS[3], "shape": "hv"},
        }
    )
    xaxis = {**title("trial number"), **integer_axis(t.number for t in data.trials)}
    return figure_layout(traces, 420, xaxis=xaxis, yaxis=title(objective))


def _numeric(value: Any, log: bool) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if log:
        return math.log10(value) if value > 0 else None
    return float(value)


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) within [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / (count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(high / step + 1e-9) + 1)]


def _ticks(low: float, high: float, log: bool, integer: bool = False) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a numeric parallel-coordinates axis (a log axis holds log10 values:
    ticks at 1, 2 and 5 times powers of ten, or powers of ten alone over many decades). An integer parameter
    gets ticks on whole numbers only (plotly's own or these nice ticks would put some at 2.5 or 0.5)."""
    if integer:
        values = integer_ticks(10**low, 10**high, log=True) if log else integer_ticks(low, high)
        positions = [math.log10(v) for v in values] if log else [float(v) for v in values]
        return positions, [str(v) for v in values]
    if not log:
        positions = _nice_ticks(low, high)
        return positions, [fmt(p) for p in positions]
    mantissas = (1.0,) if high - low > 3 else (1.0, 2.0, 5.0)
    decades = range(math.floor(low), math.ceil(high) + 1)
    positions = [math.log10(m * 10.0**k) for k in decades for m in mantissas]
    positions = [p for p in positions if low - 1e-9 <= p <= high + 1e-9]
    if len(positions) < 2:
        positions = [math.log10(v) for v in _nice_ticks(10**low, 10**high) if v > 0]
    return positions, [fmt(10**p) for p in positions]


def _dimension(axis: Axis, values: Sequence[Any]) -> dict[str, Any]:
    """A parallel-coordinates dimension. Categories become 0, 1, 2... with their names as tick labels
    (parcoords sets tick labels as plain text, so these stay unescaped; its axis label is plotly's HTML
    dialect, so that is escaped); a parameter inactive in some trials (a conditional one) gets an extra
    "(inactive)" tick below the others."""
    label = plotly_text(axis.name)
    missing = any(v is None for v in values)
    if not axis.numeric:
        categories = list(axis.categories) + ([None] if missing else [])
        index = {repr(c): i for i, c in enumerate(categories)}
        return {
            "label": label,
            "values": [index[repr(v)] for v in values],
            "tickvals": list(range(len(categories))),
            "ticktext": [_INACTIVE if c is None else fmt(c) for c in categories],
            "range": [-0.2, len(categories) - 0.8] if len(categories) > 1 else [-1, 1],
        }
    numbers = [_numeric(v, axis.log) for v in values]
    present = [n for n in numbers if n is not None]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    dimension: dict[str, Any] = {"label": label + (" (log)" if axis.log else "")}
    positions, labels = _ticks(low, high, axis.log, axis.integer)
    if missing:
        fill = low - 0.15 * ((high - low) or 1.0)
        positions, labels = [fill, *positions], [_INACTIVE, *labels]
        numbers = [fill if n is None else n for n in numbers]
        low = fill
    dimension.update(tickvals=positions, ticktext=labels)
    dimension.update(values=numbers, range=[low, high] if high > low else [low - 1, high + 1])
    return dimension


def parallel_figure(data: ReportData) -> Figure | str:
    """Parallel coordinates of the varying parameters and the objective, one line per completed trial.
    Example: ``parallel_figure(data)``."""
    completed = data.completed
    if not completed:
        return "No completed trial yet."
    if not data.axes:
        return "No parameter varies between trials."
    objectives = [t.objective for t in completed]
    dimensions = [_dimension(axis, [t.params.get(axis.name) for t in completed]) for axis in data.axes]
    # d3's ".4~g": the objective's tick labels to 4 significant digits, as fmt writes numbers
    dimensions.append({"label": plotly_text(data.study.objective_name), "values": objectives, "tickformat": ".4~g"})
    trace = {
        "type": "parcoords",
        "line": {
            "color": objectives,
            "colorscale": colorscale("Viridis"),
            "reversescale": not data.maximize,
            "showscale": True,
            "colorbar": {"title": {"text": plotly_text(data.study.objective_name)}},
        },
        "dimensions": dimensions,
    }
    return figure_layout([trace], 460, margin={"l": 80, "r": 80, "t": 60, "b": 40})


def importance_figure(importances: dict[str, float]) -> Figure:
    """A horizontal bar per parameter, the most important on top.

    Example: ``importance_figure({"lr": 0.8, "act": 0.2})``.
    """
    ordered = sorted(importances.items(), key=lambda item: item[1])
    trace = {
        "type": "bar",
        "x": [value for _, value in ordered],
        "y": [plotly_text(name) for name, _ in ordered],
        "orientation": "h",
        "marker": {"color": _COLORS[0]},
        "text": [fmt(value) for _, value in ordered],
        "textposition": "auto",
        "hoverinfo": "x+y",
    }
    xaxis = {**title("importance (fANOVA, sums to 1)"), "range": [0, 1]}
    return figure_layout([trace], 120 + 36 * len(ordered), xaxis=xaxis)


def slices_figure(data: ReportData, importances: dict[str, float] | None) -> Figure | str:
    """The objective against each of the (most important) parameters, one panel each.
    Example: ``slices_figure(data, {"lr": 0.9, "act": 0.1})``."""
    completed = data.completed
    if not completed:
        return "No completed trial yet."
    axes_by_name = {a.name: a for a in data.axes}
    ranked = [n for n in (importances or {}) if n in axes_by_name]  # most important first
    ranked += [n for n in axes_by_name if n not in ranked]  # then in declaration order
    chosen = [axes_by_name[n] for n in ranked[:_SLICE_PARAMS]]
    if not chosen:
        return "No parameter varies between trials."
    # One row of panels sharing the y axis, laid out as plotly's make_subplots(rows=1, cols=n,
    # shared_yaxes=True, subplot_titles=...) does (which alone took a tenth of a second).
    spacing = 0.2 / len(chosen)
    width = (1 - spacing * (len(chosen) - 1)) / len(chosen)
    layout: dict[str, Any] = {}
    annotations = []
    traces = []
    hovers: dict[int, str] = {}  # each trial's hover text, shared by the panels
    for column, axis in enumerate(chosen, start=1):
        suffix = "" if column == 1 else str(column)
        left = (width + spacing) * (column - 1)
        xaxis: dict[str, Any] = {"anchor": f"y{suffix}", "domain": [left, left + width]}
        yaxis: dict[str, Any] = {"anchor": f"x{suffix}", "domain": [0.0, 1.0]}
        if column > 1:
            yaxis.update(matches="y", showticklabels=False)
        annotations.append(
            {"font": {"size": 16}, "showarrow": False, "text": plotly_text(axis.name), "x": left + width / 2,
             "xanchor": "center", "xref": "paper", "y": 1.0, "yanchor": "bottom", "yref": "paper"}
        )  # fmt: skip
        shown = [t for t in completed if axis.name in t.params]
        if axis.numeric:
            xs: list[Any] = [t.params[axis.name] for t in shown]
            xaxis["type"] = "log" if axis.log else "linear"
            if axis.integer and xs and not axis.log:
                xaxis.update(integer_axis(xs))
            elif axis.integer and xs:  # a log axis takes tick values as values, not exponents
                ticks = integer_ticks(min(xs), max(xs), log=True)
                xaxis.update(tickvals=ticks, ticktext=[str(v) for v in ticks])
        else:
            xs = [plotly_text(fmt(t.params[axis.name])) for t in shown]
            order = [plotly_text(fmt(c)) for c in axis.categories]
            xaxis.update(type="category", categoryorder="array", categoryarray=order)
        layout[f"xaxis{suffix}"], layout[f"yaxis{suffix}"] = xaxis, yaxis
        for t in shown:
            if t.id not in hovers:
                hovers[t.id] = _hover(t, f": {fmt(t.objective)}")
        traces.append(
            {
                "type": "scatter",
                "x": xs,
                "y": [t.objective for t in shown],
                "mode": "markers",
                "name": plotly_text(axis.name),
                "showlegend": False,
                "hovertext": [hovers[t.id] for t in shown],
                "hoverinfo": "text",
                "marker": {
                    "size": 8,
                    "color": [t.number for t in shown],
                    "colorscale": colorscale("Blues"),
                    "showscale": column == 1,
                    "colorbar": {"title": {"text": "trial"}},
                    "line": {"width": 0.5, "color": "#444"},
                },
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
            }
        )
    layout["yaxis"].update(title(plotly_text(data.study.objective_name)))
    layout["annotations"] = annotations
    return figure_layout(traces, 400, margin={"l": 70, "r": 30, "t": 50, "b": 50}, **layout)


@dataclass(frozen=True)
class _Bar:
    worker: str
    start: datetime
    end: datetime
    outcome: str
    text: str
    hover: str


def _timeline_bars(data: ReportData) -> list[_Bar]:
    """One bar per attempt (trial_attempts); trials run before attempts were recorded fall back to their own
    started_at and finished_at."""
    by_id = data.by_id
    labels = {i: plotly_text(w.name) + (f" [gpu {plotly_text(w.gpu)}]" if w.gpu else "") for i, w in
              data.workers.items()}  # fmt: skip

    def worker_label(worker_id: int | None) -> str:
        return labels.get(worker_id, "(unknown worker)") if worker_id is not None else "(unknown worker)"

    bars = []
    with_attempts = set()
    for attempt in data.attempts:
        trial = by_id[attempt.trial_id]
        with_attempts.add(trial.id)
        outcome = attempt.outcome or "RUNNING"
        end = attempt.ended_at or (trial.finished_at if attempt.outcome else None) or data.now
        text = f"#{trial.number}"
        hover = f"trial #{trial.number}, attempt {attempt.attempt}: {outcome}<br>from epoch {attempt.start_epoch}"
        bars.append(_Bar(worker_label(attempt.worker_id), attempt.started_at, end, outcome, text, hover))
    for trial in data.trials:
        if trial.id in with_attempts or trial.started_at is None:
            continue
        end = trial.finished_at or data.now
        hover = f"trial #{trial.number}: {trial.state}"
        bars.append(_Bar(worker_label(trial.worker_id), trial.started_at, end, trial.state, f"#{trial.number}", hover))
    return sorted(bars, key=lambda b: b.start)


def _clock(moment: datetime) -> str:
    """HH:MM:SS, as ``f"{moment:%H:%M:%S}"`` writes it, several times faster (twice per bar)."""
    return moment.isoformat(timespec="seconds")[11:19]


def timeline_figure(data: ReportData) -> Figure | str:
    """A Gantt chart of the workers: one bar per attempt, colored by outcome. Example: ``timeline_figure(data)``."""
    bars = _timeline_bars(data)
    if not bars:
        return "No trial has started yet."
    rows = list(dict.fromkeys(b.worker for b in bars))  # by first start
    traces = []
    for outcome in dict.fromkeys(b.outcome for b in bars):
        mine = [b for b in bars if b.outcome == outcome]
        traces.append(
            {
                "type": "bar",
                "base": [b.start for b in mine],
                "x": [max((b.end - b.start).total_seconds() * 1000.0, 1.0) for b in mine],
                "y": [b.worker for b in mine],
                "orientation": "h",
                "name": outcome,
                "marker": {"color": _STATE_COLORS.get(outcome, _COLORS[0]), "line": {"color": "white", "width": 1}},
                "text": [b.text for b in mine],
                "textposition": "inside",
                "insidetextanchor": "middle",
                "textangle": 0,
                "hovertext": [
                    f"{b.hover}<br>{_clock(b.start)} to {_clock(b.end)} ({fmt((b.end - b.start).total_seconds())} s)"
                    for b in mine
                ],
                "hoverinfo": "text",
            }
        )
    xaxis = {"type": "date", **title("time (UTC)")}
    yaxis = {"type": "category", "categoryorder": "array", "categoryarray": rows[::-1], **title("worker")}
    return figure_layout(
        traces,
        140 + 48 * len(rows),
        barmode="overlay",
        bargap=0.3,
        uniformtext={"minsize": 9, "mode": "hide"},
        xaxis=xaxis,
        yaxis=yaxis,
    )


def confusion_figure(confusion: dict[str, Any]) -> Figure:
    """The final model's confusion matrix as a heatmap, its classes named where the data loader named them.
    Example: ``confusion_figure({"labels": ["0", "1"], "matrix": [[5, 1], [1, 3]]})``."""
    names = class_label_names(confusion)
    labels = [plotly_text(names.get(str(label), label)) for label in confusion["labels"]]
    matrix = confusion["matrix"]
    trace = {
        "type": "heatmap",
        "z": matrix,
        "x": labels,
        "y": labels,
        "colorscale": colorscale("Blues"),
        "text": matrix,
        "texttemplate": "%{text}",
        "hovertemplate": "true %{y}, predicted %{x}: %{z}<extra></extra>",
    }
    xaxis = {**title("predicted"), "type": "category"}
    yaxis = {**title("true"), "type": "category", "autorange": "reversed"}
    return figure_layout([trace], 200 + 30 * len(labels), xaxis=xaxis, yaxis=yaxis)
