"""The learning-curves figure: one line per trial, each in a colour of its own, the best trial highlighted.

Up to :data:`LEGEND_TRIALS` drawn trials get distinct colours from a qualitative palette and a legend entry
each ("#3", "#7 (rung 1, PRUNED)"); more get colours sampled from a colour scale by trial number, with a colour
bar titled "trial #" instead of a legend that would not fit. The best trial is drawn last (on top) with a
thick line and the legend entry "best #N". Successive halving (Hyperband, ASHA): a promoted trial continues
its parent's line with a dashed segment, in its own colour, from the parent's value at the epoch the promotion
starts from; its rung is in its legend entry and hover text.

Example::

    >>> figure = curves_figure(load_report_data(store, "mnist_mlp"))
    >>> [trace["name"] for trace in figure["data"]][-1]
    'best #7'
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from hpsearch.analysis.report.data import ReportData, TrialInfo
from hpsearch.analysis.report.plotting import Figure, colorscale, figure_layout, fmt, integer_axis, plotly_text, title

# plotly's qualitative "Dark24": 24 colours that are distinct from each other and readable on white.
PALETTE = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB",
    "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
    "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)  # fmt: skip
LEGEND_TRIALS = len(PALETTE)  # more drawn trials than colours in the palette: a colour bar instead of a legend
# A browser draws every trace as its own SVG group: a 10,000-trial study in 10,000 traces takes seconds to
# draw, so beyond this many trials consecutive trials share a trace (and a colour); hover still names each.
MAX_TRACES = 150
BEST_WIDTH = 4.0
LINE_WIDTH = 1.5
_SCALE_END = 0.8  # Plasma's last fifth is pale yellow, hard to see on white


@cache
def trial_scale() -> list[list[Any]]:
    """The colour scale of trials by number (Plasma, its pale end cut off), as [[position, colour], ...]."""
    from plotly.colors import sample_colorscale

    stops = [i / 10 for i in range(11)]
    colours = sample_colorscale(colorscale("Plasma"), [s * _SCALE_END for s in stops])
    return [[s, c] for s, c in zip(stops, colours, strict=True)]


def _scale_colours(positions: Sequence[float]) -> list[str]:
    from plotly.colors import sample_colorscale

    return list(sample_colorscale(trial_scale(), list(positions)))


def _label(trial: TrialInfo) -> str:
    """"#7", "#7 (rung 1)", "#7 (PRUNED)": the trial's number, its rung and a state other than COMPLETED."""
    notes = ([f"rung {trial.rung}"] if trial.rung is not None else []) + (
        [str(trial.state)] if trial.state != "COMPLETED" else []
    )
    return f"#{trial.number}" + (f" ({', '.join(notes)})" if notes else "")


def _lines(data: ReportData, trials: Sequence[TrialInfo]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The trials' curves as one x/y/text series separated by None gaps, and the dashed links of promoted
    trials to their parents' values."""
    line: dict[str, list[Any]] = {"x": [], "y": [], "hovertext": []}
    link: dict[str, list[Any]] = {"x": [], "y": []}
    by_id = data.by_id
    for trial in trials:
        curve = data.curves[trial.id]
        epochs = sorted(curve)
        label = f"trial {_label(trial)}"
        line["x"] += [*epochs, None]
        line["y"] += [*(curve[e] for e in epochs), None]
        line["hovertext"] += [*(f"{label}<br>epoch {e}: {fmt(curve[e])}" for e in epochs), None]
        parent = by_id.get(trial.parent_trial_id) if trial.parent_trial_id is not None else None
        start = data.curves.get(parent.id, {}).get(trial.initial_epoch) if parent is not None else None
        # A promoted trial reports from initial_epoch + 1 on; one that had to restart from scratch (its
        # parent's checkpoint was unusable) has a whole curve of its own and no link.
        if start is not None and epochs[0] > trial.initial_epoch:
            link["x"] += [trial.initial_epoch, epochs[0], None]
            link["y"] += [start, curve[epochs[0]], None]
    return line, link


def _traces(
    data: ReportData, trials: Sequence[TrialInfo], name: str, colour: str, width: float, legend: bool
) -> list[dict[str, Any]]:
    line, link = _lines(data, trials)
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            **line,
            "mode": "lines+markers",
            "name": name,
            "legendgroup": name,
            "showlegend": legend,
            "line": {"color": colour, "width": width},
            "marker": {"size": 4 if width == LINE_WIDTH else 6},
            "hoverinfo": "text",
            "connectgaps": False,
        }
    ]
    if link["x"]:
        traces.append(
            {
                "type": "scatter",
                **link,
                "mode": "lines",
                "name": f"{name}: promoted from",
                "legendgroup": name,
                "showlegend": False,
                "line": {"color": colour, "width": width, "dash": "dash"},
                "hoverinfo": "skip",
                "connectgaps": False,
            }
        )
    return traces


def _groups(drawn: Sequence[TrialInfo]) -> list[list[TrialInfo]]:
    """The drawn trials in traces: one each, or, beyond :data:`MAX_TRACES`, runs of consecutive numbers."""
    if len(drawn) <= MAX_TRACES:
        return [[t] for t in drawn]
    size = -(-len(drawn) // MAX_TRACES)
    return [list(drawn[i : i + size]) for i in range(0, len(drawn), size)]


def curves_figure(data: ReportData) -> Figure | str:
    """One line per trial in a colour of its own, a legend (or, for many trials, a colour bar of trial
    numbers) naming them, the best trial thick and on top as "best #N"; promoted trials continue their
    parent's line with a dashed segment. Example: ``curves_figure(data)``."""
    drawn = sorted((t for t in data.trials if data.curves.get(t.id)), key=lambda t: t.number)
    if not drawn:
        return "No epoch reported yet."
    best = data.best if data.best is not None and data.curves.get(data.best.id) else None
    others = [t for t in drawn if best is None or t.id != best.id]
    legend = len(drawn) <= LEGEND_TRIALS
    traces: list[dict[str, Any]] = []
    # Each trial is a legend group of its own (its dashed link toggles with it): no gap between groups.
    layout: dict[str, Any] = {"legend": {"title": {"text": "trial"}, "tracegroupgap": 0}}
    if legend:
        colours = dict(zip((t.id for t in drawn), PALETTE, strict=False))
        for trial in others:
            traces += _traces(data, [trial], _label(trial), colours[trial.id], LINE_WIDTH, True)
    else:
        low, high = drawn[0].number, drawn[-1].number
        groups = _groups(others)
        middles = [(g[0].number + g[-1].number) / 2 for g in groups]
        positions = [(m - low) / ((high - low) or 1) for m in middles]
        colours = {}
        for group, colour in zip(groups, _scale_colours(positions), strict=True):
            name = _label(group[0]) if len(group) == 1 else f"#{group[0].number}-#{group[-1].number}"
            traces += _traces(data, group, name, colour, LINE_WIDTH, False)
            colours.update({t.id: colour for t in group})
        if best is not None:
            colours[best.id] = _scale_colours([(best.number - low) / ((high - low) or 1)])[0]
        traces.append(
            {
                "type": "scatter",
                "x": [None, None],
                "y": [None, None],
                "mode": "markers",
                "name": "trial #",
                "showlegend": False,
                "hoverinfo": "skip",
                "marker": {
                    "color": [low, high],
                    "colorscale": trial_scale(),
                    "cmin": low,
                    "cmax": high,
                    "showscale": True,
                    "colorbar": {"title": {"text": "trial #"}},
                },
            }
        )
        layout["legend"] = {"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"}
        layout["margin"] = {"l": 70, "r": 30, "t": 40, "b": 50}
    if best is not None:
        name = f"best #{best.number}" + (f" (rung {best.rung})" if best.rung is not None else "")
        traces += _traces(data, [best], name, colours[best.id], BEST_WIDTH, True)
    fidelity = data.multi_fidelity
    epochs = sorted({e for t in drawn for e in data.curves[t.id]} | {t.initial_epoch for t in drawn})
    xaxis = {
        **title("epoch" + (" (dashed: a promoted trial continues its parent)" if fidelity else "")),
        **integer_axis(epochs),
    }
    height = max(460, 110 + 20 * (len(drawn) + 1)) if legend else 460
    return figure_layout(
        traces, height, xaxis=xaxis, yaxis=title(plotly_text(data.study.objective_name)), **layout
    )
