"""The dashboard's own figures (the report's are in :mod:`hpsearch.analysis.report.figures`): the Pareto
front of a multi-objective study and every metric of one trial. User strings pass through ``plotly_text``.

Example::

    >>> metrics_figure({"loss": [[1, 0.7], [2, 0.5]]})["data"][0]["name"]
    'loss'
"""

from __future__ import annotations

from typing import Any

from hpsearch.analysis.pareto import pareto_front
from hpsearch.analysis.report.data import ReportData
from hpsearch.analysis.report.plotting import Figure, figure_layout, fmt, integer_axis, plotly_text


def pareto_figure(data: ReportData) -> Figure | str:
    """Completed trials by their first two objectives, the Pareto front (over every objective) highlighted.
    Example: ``pareto_figure(load_report_data(store, "size_vs_accuracy"))``."""
    objectives = data.study.objectives or []
    directions = [o["direction"] for o in objectives]
    scored = [
        (t, [float(v) for v in t.objective_values if v is not None])
        for t in data.trials
        if t.state == "COMPLETED" and t.objective_values and None not in t.objective_values
    ]
    if not scored:
        return "No completed trial with every objective yet."
    front = {t.id for t in pareto_front(scored, directions)}
    traces = []
    for on_front in (False, True):
        shown = [(t, v) for t, v in scored if (t.id in front) == on_front]
        if not shown:
            continue
        shown.sort(key=lambda item: item[1][0])
        trace: dict[str, Any] = {
            "type": "scatter",
            "x": [v[0] for _, v in shown],
            "y": [v[1] for _, v in shown],
            "mode": "lines+markers" if on_front else "markers",
            "name": "Pareto front" if on_front else "dominated",
            "marker": {"size": 9 if on_front else 7, "color": "#d62728" if on_front else "#9ecae1"},
            "hovertext": [f"trial #{t.number}<br>" + ", ".join(fmt(x) for x in v) for t, v in shown],
            "hoverinfo": "text",
        }
        if on_front:
            trace["line"] = {"shape": "hv", "color": "#d62728"}
        traces.append(trace)
    names = [plotly_text(f"{o['name']} ({o['direction']})") for o in objectives]
    return figure_layout(traces, 420, xaxis={"title": {"text": names[0]}}, yaxis={"title": {"text": names[1]}})


def metrics_figure(metrics: dict[str, list[list[Any]]]) -> Figure | str:
    """One line per logged metric of a trial, by epoch ({name: [[epoch, value], ...]}).
    Example: ``metrics_figure({"val_accuracy": [[1, 0.8], [2, 0.85]]})``."""
    if not metrics:
        return "No epoch reported yet."
    traces = [
        {"type": "scatter", "x": [p[0] for p in points], "y": [p[1] for p in points], "mode": "lines+markers",
         "name": plotly_text(name)}
        for name, points in metrics.items()
    ]  # fmt: skip
    xaxis: dict[str, Any] = {"title": {"text": "epoch"}, **integer_axis(p[0] for ps in metrics.values() for p in ps)}
    return figure_layout(traces, 380, xaxis=xaxis)
