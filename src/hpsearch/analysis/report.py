"""The study report: one self-contained HTML page about a study, for analysts.

``render_report(store, "mnist_mlp")`` returns the page: a summary, the optimisation history, parallel
coordinates, parameter importance (fANOVA through Optuna), learning curves with Hyperband/ASHA rungs and
promotions, slice plots, a worker timeline, the final model and a table of every trial.

The page needs no network: plotly.js is embedded once, inline, and a Content-Security-Policy forbids the
browser to fetch anything. Every string that comes from a user (study, parameter and worker names,
parameter values, errors) is HTML-escaped, in the page and in the figures (plotly renders its text as a
small HTML dialect, so it gets the escaped form and shows the original characters).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hpsearch.space import Param, SearchSpace, Value
from hpsearch.store import Store, TrialState
from hpsearch.store.models import Study, Trial, TrialAttempt, TrialMetric, Worker, utcnow

# The browser may run the inline scripts (plotly.js compiles WebGL shaders with `new Function`, hence
# 'unsafe-eval') and show data/blob images, and nothing else: no request ever leaves the page.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; worker-src blob:"
)
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
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

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; max-width: 1360px; padding: 0 20px 40px; color: #222; }
h1 { margin: 20px 0 4px; font-size: 1.6em; }
h2 { margin: 28px 0 8px; font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
nav a { margin-right: 12px; }
.muted, .note { color: #666; }
.note { font-style: italic; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.summary dt { font-weight: 600; }
dl.summary dd { margin: 0; }
.plot { width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eef8ee; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _e(value: object) -> str:
    """HTML-escape a user string for the page (quotes too, so it is also safe in attributes)."""
    return html.escape(str(value), quote=True)


def _t(value: object) -> str:
    """Escape a user string for plotly, which renders its text as a small HTML dialect (tags like <b>, <br>,
    <a>) and decodes &lt; &gt; &amp; (but not &quot;), so the reader sees the original characters."""
    return html.escape(str(value), quote=False)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --- the data: one consistent snapshot of the study ---------------------------------------------------


@dataclass(frozen=True)
class _Axis:
    """One parameter as the figures show it: numeric (optionally log-scaled) or categorical."""

    name: str
    numeric: bool
    log: bool = False
    categories: tuple[Value, ...] = ()


@dataclass
class _Data:
    study: Study
    trials: list[Trial]
    curves: dict[int, dict[int, float]]  # trial id -> epoch -> value of the (first) objective metric
    attempts: list[TrialAttempt]
    workers: dict[int, Worker]
    counts: dict[str, int]
    best: Trial | None
    space: SearchSpace
    axes: list[_Axis]
    now: datetime

    @property
    def by_id(self) -> dict[int, Trial]:
        return {t.id: t for t in self.trials}

    @property
    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETED and t.objective is not None]

    @property
    def multi_fidelity(self) -> bool:
        return any(t.rung is not None for t in self.trials)

    @property
    def maximize(self) -> bool:
        return self.study.direction == "max"


def _load(store: Store, study_name: str) -> _Data:
    study = store.study(study_name)
    with store.session() as session:  # one transaction: a consistent view of a study that is still running
        # (the best trial comes from Store.best_trial, the one definition of "best"; looked up in this view)
        trials = list(session.scalars(select(Trial).where(Trial.study_id == study.id).order_by(Trial.number)))
        metric_rows = session.execute(
            select(TrialMetric.trial_id, TrialMetric.epoch, TrialMetric.value)
            .join(Trial, Trial.id == TrialMetric.trial_id)
            .where(Trial.study_id == study.id, TrialMetric.name == study.objective_name)
        ).all()
        attempts = list(
            session.scalars(
                select(TrialAttempt)
                .join(Trial, Trial.id == TrialAttempt.trial_id)
                .where(Trial.study_id == study.id)
                .order_by(TrialAttempt.started_at, TrialAttempt.id)
            )
        )
        worker_ids = {t.worker_id for t in trials} | {a.worker_id for a in attempts}
        worker_ids.discard(None)
        workers = (
            {w.id: w for w in session.scalars(select(Worker).where(Worker.id.in_(worker_ids)))} if worker_ids else {}
        )
    curves: dict[int, dict[int, float]] = {}
    for trial_id, epoch, value in metric_rows:
        if value is not None and math.isfinite(value):
            curves.setdefault(trial_id, {})[epoch] = value
    space = SearchSpace(study.space)
    best = store.best_trial(study)
    return _Data(
        study=study,
        trials=trials,
        curves=curves,
        attempts=attempts,
        workers=workers,
        counts={state.value: sum(t.state == state for t in trials) for state in TrialState},
        best=next((t for t in trials if best is not None and t.id == best.id), None),
        space=space,
        axes=_axes(space.params, trials),
        now=utcnow(),
    )


def _axes(params: Sequence[Param], trials: Sequence[Trial]) -> list[_Axis]:
    """The parameters that vary, in declaration order; parameters only the trials know (declared in a
    HyperModel's fit and not yet in the space) follow, their kind guessed from their values."""
    declared = {p.name: p for p in params}
    names = list(declared)
    for trial in trials:
        names += [name for name in trial.params if name not in names]
    axes = []
    for name in names:
        values = [t.params[name] for t in trials if name in t.params]
        param = declared.get(name)
        if param is not None and param.kind == "fixed":
            continue
        if len({repr(v) for v in values}) < 2 and param is None:
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if param is not None:
            numeric = param.kind in ("int", "float") and numeric
        if numeric:
            axes.append(_Axis(name, numeric=True, log=bool(param and param.log)))
            continue
        known: list[Value] = []
        if param is not None and param.kind in ("choice", "boolean"):
            known = list(param.grid_values())
        known += [v for v in dict.fromkeys(values) if v not in known]
        axes.append(_Axis(name, numeric=False, categories=tuple(known)))
    return axes


# --- the page -------------------------------------------------------------------------------------------


_SECTIONS = (
    ("summary", "Summary"),
    ("history", "Optimization history"),
    ("parallel", "Parallel coordinates"),
    ("importance", "Parameter importance"),
    ("curves", "Learning curves"),
    ("slices", "Slices"),
    ("timeline", "Workers"),
    ("final-model", "Final model"),
    ("trials", "Trials"),
)


def render_report(store: Store, study_name: str) -> str:
    """The whole report of a study as one self-contained HTML page (no network access needed or made)."""
    from plotly.offline import get_plotlyjs

    data = _load(store, study_name)
    importances, importance_note = _importances(data)
    bodies: dict[str, str] = {
        "summary": _summary_section(data),
        "history": _figure_section("history", data, _history_figure),
        "parallel": _figure_section("parallel", data, _parallel_figure),
        "importance": _importance_section(importances, importance_note),
        "curves": _figure_section("curves", data, _curves_figure),
        "slices": _figure_section("slices", data, lambda d: _slices_figure(d, importances)),
        "timeline": _figure_section("timeline", data, _timeline_figure),
        "final-model": _final_model_section(store, data.study),
        "trials": _trials_section(data),
    }
    nav = " ".join(f'<a href="#{key}">{title}</a>' for key, title in _SECTIONS)
    sections = "\n".join(
        f'<section id="{key}">\n<h2>{title}</h2>\n{bodies[key]}\n</section>' for key, title in _SECTIONS
    )
    name = _e(data.study.name)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hpsearch report: {name}</title>
<style>{_CSS}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<h1>Study {name}</h1>
<p class="muted">hpsearch report generated {data.now:%Y-%m-%d %H:%M:%S} UTC</p>
<nav>{nav}</nav>
{sections}
</body>
</html>
"""


def _summary_section(data: _Data) -> str:
    study = data.study
    objectives = study.objectives or [{"name": study.objective_name, "direction": study.direction}]
    objective_text = ", ".join(f"<code>{_e(o['name'])}</code> ({_e(o['direction'])})" for o in objectives)
    counts = ", ".join(f"{_e(state)} {n}" for state, n in data.counts.items() if n) or "none yet"
    state = _e(study.state) + (f" <span class='muted'>({_e(study.message)})</span>" if study.message else "")
    rows = [
        ("Algorithm", _e(study.algorithm)),
        ("Objective" + ("s" if len(objectives) > 1 else ""), objective_text),
        ("State", state),
        ("Trials", f"{sum(data.counts.values())} of at most {study.max_trials}: {counts}"),
        ("Max epochs", _e(study.max_epochs)),
        ("Created", f"{study.created_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    best = data.best
    if best is None:
        rows.append(("Best trial", "<span class='note'>no completed trial yet</span>"))
    else:
        rows.append(
            (
                "Best trial",
                f"#{best.number}: {_e(study.objective_name)} = <b>{_fmt(best.objective)}</b> "
                f"at epoch {best.best_epoch} of {best.epochs_done}",
            )
        )
        rows.append(("Best parameters", _params_html(best.params)))
    if len(objectives) > 1:
        rows.append(("Note", "<span class='note'>The figures rank trials by the first objective.</span>"))
    items = "\n".join(f"<dt>{key}</dt><dd>{value}</dd>" for key, value in rows)
    return f'<dl class="summary">\n{items}\n</dl>'


def _params_html(params: dict[str, Any]) -> str:
    return ", ".join(f"<code>{_e(k)}={_e(_fmt(v))}</code>" for k, v in params.items()) or "(none)"


def _figure_section(key: str, data: _Data, build: Callable[[_Data], Any]) -> str:
    """A figure in its container (``<div class="plot" id="plot-KEY">``), or a note when there is nothing
    to draw (``build`` returns a string)."""
    figure = build(data)
    if isinstance(figure, str):
        return f'<p class="note">{figure}</p>'
    return f'<div class="plot" id="plot-{key}">{_figure_html(figure, f"fig-{key}")}</div>'


def _figure_html(figure: Any, div_id: str) -> str:
    """The figure's div and the inline script that draws it. Plotly writes "<", ">" and "/" in the figure's
    JSON as \\u escapes, so no string in it (parcoords tick labels are unescaped) can close the script;
    checked here so that a plotly that stopped doing so fails loudly instead of emitting a broken page."""
    text = str(
        figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOTLY_CONFIG, default_width="100%"
        )
    )
    opening = text.index(">", text.index("<script")) + 1
    if "<" in text[opening : text.rindex("</script>")]:
        raise RuntimeError(f"plotly left a '<' in the script of figure {div_id}; refusing to embed it")
    return text


def _layout(figure: Any, height: int, **layout: Any) -> Any:
    layout.setdefault("margin", {"l": 70, "r": 30, "t": 30, "b": 50})
    figure.update_layout(template="plotly_white", height=height, **layout)
    return figure


def _hover(trial: Trial, extra: str = "") -> str:
    params = "<br>".join(f"{_t(k)} = {_t(_fmt(v))}" for k, v in trial.params.items())
    return f"trial #{trial.number}{extra}<br>{params}"


# --- figures --------------------------------------------------------------------------------------------


def _history_figure(data: _Data) -> Any:
    import plotly.graph_objects as go

    completed = data.completed
    if not completed:
        return "No completed trial yet."
    objective = _t(data.study.objective_name)
    figure = go.Figure()
    pruned = [t for t in data.trials if t.state == TrialState.PRUNED and t.objective is not None]
    if pruned:
        figure.add_scatter(
            x=[t.number for t in pruned],
            y=[t.objective for t in pruned],
            mode="markers",
            name="pruned",
            marker={"color": "#bbbbbb", "size": 7},
            hovertext=[_hover(t, " (pruned)") for t in pruned],
            hoverinfo="text",
        )
    figure.add_scatter(
        x=[t.number for t in completed],
        y=[t.objective for t in completed],
        mode="markers",
        name="completed trial",
        marker={"color": _COLORS[0], "size": 8},
        hovertext=[_hover(t, f": {_fmt(t.objective)}") for t in completed],
        hoverinfo="text",
    )
    best: list[float] = []
    for trial in completed:
        assert trial.objective is not None
        better = not best or (trial.objective > best[-1] if data.maximize else trial.objective < best[-1])
        best.append(trial.objective if better else best[-1])
    figure.add_scatter(
        x=[t.number for t in completed],
        y=best,
        mode="lines",
        name="best so far",
        line={"color": _COLORS[3], "shape": "hv"},
    )
    return _layout(figure, 420, xaxis_title="trial number", yaxis_title=objective)


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


def _ticks(low: float, high: float, log: bool) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a numeric parallel-coordinates axis (a log axis holds log10 values:
    ticks at 1, 2 and 5 times powers of ten, or powers of ten alone over many decades)."""
    if not log:
        positions = _nice_ticks(low, high)
        return positions, [_fmt(p) for p in positions]
    mantissas = (1.0,) if high - low > 3 else (1.0, 2.0, 5.0)
    decades = range(math.floor(low), math.ceil(high) + 1)
    positions = [math.log10(m * 10.0**k) for k in decades for m in mantissas]
    positions = [p for p in positions if low - 1e-9 <= p <= high + 1e-9]
    if len(positions) < 2:
        positions = [math.log10(v) for v in _nice_ticks(10**low, 10**high) if v > 0]
    return positions, [f"{10**p:.3g}" for p in positions]


def _dimension(axis: _Axis, values: Sequence[Any]) -> dict[str, Any]:
    """A parallel-coordinates dimension. Categories become 0, 1, 2... with their names as tick labels
    (parcoords sets tick labels as plain text, so these stay unescaped; its axis label is plotly's HTML
    dialect, so that is escaped); a parameter inactive in some trials (a conditional one) gets an extra
    "(inactive)" tick below the others."""
    label = _t(axis.name)
    missing = any(v is None for v in values)
    if not axis.numeric:
        categories = list(axis.categories) + ([None] if missing else [])
        index = {repr(c): i for i, c in enumerate(categories)}
        return {
            "label": label,
            "values": [index[repr(v)] for v in values],
            "tickvals": list(range(len(categories))),
            "ticktext": [_INACTIVE if c is None else _fmt(c) for c in categories],
            "range": [-0.2, len(categories) - 0.8] if len(categories) > 1 else [-1, 1],
        }
    numbers = [_numeric(v, axis.log) for v in values]
    present = [n for n in numbers if n is not None]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    dimension: dict[str, Any] = {"label": label + (" (log)" if axis.log else "")}
    positions, labels = _ticks(low, high, axis.log)
    if missing:
        fill = low - 0.15 * ((high - low) or 1.0)
        positions, labels = [fill, *positions], [_INACTIVE, *labels]
        numbers = [fill if n is None else n for n in numbers]
        low = fill
    dimension.update(tickvals=positions, ticktext=labels)
    dimension.update(values=numbers, range=[low, high] if high > low else [low - 1, high + 1])
    return dimension


def _parallel_figure(data: _Data) -> Any:
    import plotly.graph_objects as go

    completed = data.completed
    if not completed:
        return "No completed trial yet."
    if not data.axes:
        return "No parameter varies between trials."
    objectives = [t.objective for t in completed]
    dimensions = [_dimension(axis, [t.params.get(axis.name) for t in completed]) for axis in data.axes]
    dimensions.append({"label": _t(data.study.objective_name), "values": objectives})
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": objectives,
                "colorscale": "Viridis",
                "reversescale": not data.maximize,
                "showscale": True,
                "colorbar": {"title": {"text": _t(data.study.objective_name)}},
            },
            dimensions=dimensions,
        )
    )
    return _layout(figure, 460, margin={"l": 80, "r": 80, "t": 60, "b": 40})


def _importance_rows(data: _Data) -> list[Trial]:
    """Completed trials, each configuration once: a promoted configuration (Hyperband, ASHA) counts with its
    largest budget."""
    deepest: dict[str, Trial] = {}
    for trial in data.completed:
        key = repr(sorted(trial.params.items(), key=lambda item: item[0]))
        kept = deepest.get(key)
        if kept is None or (trial.budget_epochs, trial.number) > (kept.budget_epochs, kept.number):
            deepest[key] = trial
    return sorted(deepest.values(), key=lambda t: t.number)


def _importances(data: _Data) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances of the parameters set in every completed trial, and a note on what was left out
    (or why there are none)."""
    import optuna

    from hpsearch.strategies.samplers import distribution

    rows = _importance_rows(data)
    if len(rows) < 2:
        return None, "Parameter importance needs at least two completed trials."
    params = {p.name: p for p in data.space.params if p.kind != "fixed"}
    varying = {a.name for a in data.axes}
    names = [n for n in params if n in varying and all(n in t.params for t in rows)]
    partial = [n for n in params if n in varying and n not in names]
    if not names:
        return None, "No parameter is set in every completed trial, so their importance cannot be compared."
    distributions = {name: distribution(params[name]) for name in names}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if data.maximize else "minimize")
    skipped = 0
    for trial in rows:
        try:
            study.add_trial(
                optuna.trial.create_trial(
                    params={n: trial.params[n] for n in names}, distributions=distributions, value=trial.objective
                )
            )
        except ValueError:  # a value outside the (since narrowed) space
            skipped += 1
    notes = []
    if partial:
        notes.append("Left out (inactive in some trials): " + ", ".join(_e(n) for n in partial) + ".")
    if skipped:
        notes.append(f"{skipped} trial(s) with values outside the search space were left out.")
    if data.multi_fidelity:
        notes.append("Each configuration counts once, with the result of its largest budget.")
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=names)
    except Exception as exc:  # too few or too uniform trials: say so instead of failing the report
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, " ".join([f"Parameter importance could not be computed: {_e(first_line)}", *notes])
    return dict(importances), " ".join(notes)


def _importance_section(importances: dict[str, float] | None, note: str) -> str:
    import plotly.graph_objects as go

    if not importances:
        return f'<p class="note">{note or "No parameter importance to show."}</p>'
    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = go.Figure(
        go.Bar(
            x=[value for _, value in ordered],
            y=[_t(name) for name, _ in ordered],
            orientation="h",
            marker={"color": _COLORS[0]},
            text=[f"{value:.2f}" for _, value in ordered],
            textposition="auto",
            hoverinfo="x+y",
        )
    )
    _layout(figure, 120 + 36 * len(ordered), xaxis_title="importance (fANOVA, sums to 1)", xaxis_range=[0, 1])
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f'<div class="plot" id="plot-importance">{_figure_html(figure, "fig-importance")}</div>{note_html}'


def _curves_figure(data: _Data) -> Any:
    """One line per trial. Successive halving: colored by rung, and a promoted trial continues its parent's
    line with a dashed segment from the parent's value at the epoch the promotion starts from."""
    import plotly.graph_objects as go

    drawn = [t for t in data.trials if data.curves.get(t.id)]
    if not drawn:
        return "No epoch reported yet."

    def group(trial: Trial) -> str:
        return f"rung {trial.rung}" if data.multi_fidelity and trial.rung is not None else str(trial.state)

    groups = sorted({group(t) for t in drawn}, key=lambda g: (len(g), g))  # rung 2 before rung 10
    colors = {
        g: _COLORS[i % len(_COLORS)] if data.multi_fidelity else _STATE_COLORS.get(g, _COLORS[0])
        for i, g in enumerate(groups)
    }
    by_id = data.by_id
    figure = go.Figure()
    for name in groups:
        xs: list[int | None] = []
        ys: list[float | None] = []
        texts: list[str | None] = []
        links_x: list[int | None] = []
        links_y: list[float | None] = []
        for trial in (t for t in drawn if group(t) == name):
            curve = data.curves[trial.id]
            epochs = sorted(curve)
            label = f"trial #{trial.number}" + (f" (rung {trial.rung})" if trial.rung is not None else "")
            xs += [*epochs, None]
            ys += [*(curve[e] for e in epochs), None]
            texts += [*(f"{label}<br>epoch {e}: {_fmt(curve[e])}" for e in epochs), None]
            parent = by_id.get(trial.parent_trial_id) if trial.parent_trial_id is not None else None
            start = data.curves.get(parent.id, {}).get(trial.initial_epoch) if parent is not None else None
            # A promoted trial reports from initial_epoch + 1 on; one that had to restart from scratch (its
            # parent's checkpoint was unusable) has a whole curve of its own and no link.
            if start is not None and epochs[0] > trial.initial_epoch:
                links_x += [trial.initial_epoch, epochs[0], None]
                links_y += [start, curve[epochs[0]], None]
        figure.add_scatter(
            x=xs,
            y=ys,
            mode="lines+markers",
            name=name,
            legendgroup=name,
            line={"color": colors[name], "width": 1.5},
            marker={"size": 4},
            hovertext=texts,
            hoverinfo="text",
            connectgaps=False,
        )
        if links_x:
            figure.add_scatter(
                x=links_x,
                y=links_y,
                mode="lines",
                name=f"{name}: promoted from",
                legendgroup=name,
                showlegend=False,
                line={"color": colors[name], "width": 1.5, "dash": "dash"},
                hoverinfo="skip",
                connectgaps=False,
            )
    title = "epoch" + (" (dashed: a promoted trial continues its parent)" if data.multi_fidelity else "")
    last_epoch = max(max(data.curves[t.id]) for t in drawn)
    _layout(figure, 460, xaxis_title=title, yaxis_title=_t(data.study.objective_name))
    if last_epoch <= 20:
        figure.update_xaxes(dtick=1)
    return figure


def _slices_figure(data: _Data, importances: dict[str, float] | None) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    completed = data.completed
    if not completed:
        return "No completed trial yet."
    axes_by_name = {a.name: a for a in data.axes}
    ranked = [n for n in (importances or {}) if n in axes_by_name]  # most important first
    ranked += [n for n in axes_by_name if n not in ranked]  # then in declaration order
    chosen = [axes_by_name[n] for n in ranked[:_SLICE_PARAMS]]
    if not chosen:
        return "No parameter varies between trials."
    figure = make_subplots(rows=1, cols=len(chosen), shared_yaxes=True, subplot_titles=[_t(a.name) for a in chosen])
    for column, axis in enumerate(chosen, start=1):
        shown = [t for t in completed if axis.name in t.params]
        if axis.numeric:
            xs: list[Any] = [t.params[axis.name] for t in shown]
        else:
            xs = [_t(_fmt(t.params[axis.name])) for t in shown]
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=[t.objective for t in shown],
                mode="markers",
                name=_t(axis.name),
                showlegend=False,
                hovertext=[_hover(t, f": {_fmt(t.objective)}") for t in shown],
                hoverinfo="text",
                marker={
                    "size": 8,
                    "color": [t.number for t in shown],
                    "colorscale": "Blues",
                    "showscale": column == 1,
                    "colorbar": {"title": {"text": "trial"}},
                    "line": {"width": 0.5, "color": "#444"},
                },
            ),
            row=1,
            col=column,
        )
        if axis.numeric:
            figure.update_xaxes(type="log" if axis.log else "linear", row=1, col=column)
        else:
            order = [_t(_fmt(c)) for c in axis.categories]
            figure.update_xaxes(type="category", categoryorder="array", categoryarray=order, row=1, col=column)
    figure.update_yaxes(title_text=_t(data.study.objective_name), row=1, col=1)
    return _layout(figure, 400, margin={"l": 70, "r": 30, "t": 50, "b": 50})


@dataclass(frozen=True)
class _Bar:
    worker: str
    start: datetime
    end: datetime
    outcome: str
    text: str
    hover: str


def _timeline_bars(data: _Data) -> list[_Bar]:
    """One bar per attempt (trial_attempts); trials run before attempts were recorded fall back to their own
    started_at and finished_at."""
    by_id = data.by_id

    def worker_label(worker_id: int | None) -> str:
        worker = data.workers.get(worker_id) if worker_id is not None else None
        if worker is None:
            return "(unknown worker)"
        return _t(worker.name) + (f" [gpu {_t(worker.gpu)}]" if worker.gpu else "")

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


def _timeline_figure(data: _Data) -> Any:
    import plotly.graph_objects as go

    bars = _timeline_bars(data)
    if not bars:
        return "No trial has started yet."
    rows = list(dict.fromkeys(b.worker for b in bars))  # by first start
    figure = go.Figure()
    for outcome in dict.fromkeys(b.outcome for b in bars):
        mine = [b for b in bars if b.outcome == outcome]
        figure.add_bar(
            base=[b.start for b in mine],
            x=[max((b.end - b.start).total_seconds() * 1000.0, 1.0) for b in mine],
            y=[b.worker for b in mine],
            orientation="h",
            name=outcome,
            marker={"color": _STATE_COLORS.get(outcome, _COLORS[0]), "line": {"color": "white", "width": 1}},
            text=[b.text for b in mine],
            textposition="inside",
            insidetextanchor="middle",
            textangle=0,
            hovertext=[
                f"{b.hover}<br>{b.start:%H:%M:%S} to {b.end:%H:%M:%S} ({(b.end - b.start).total_seconds():.1f} s)"
                for b in mine
            ],
            hoverinfo="text",
        )
    figure.update_xaxes(type="date", title_text="time (UTC)")
    figure.update_yaxes(type="category", categoryorder="array", categoryarray=rows[::-1], title_text="worker")
    return _layout(
        figure, 140 + 48 * len(rows), barmode="overlay", bargap=0.3, uniformtext={"minsize": 9, "mode": "hide"}
    )


# --- final model and the table ---------------------------------------------------------------------------


def _final_model_section(store: Store, study: Study) -> str:
    """The newest completed final job (``hpsearch promote``): test metrics, confusion-matrix heatmap,
    per-class and per-slice tables, and its exported files."""
    jobs = [job for job in store.final_jobs(study.id) if job.state == TrialState.COMPLETED]
    if not jobs:
        waiting = store.final_jobs(study.id)
        if waiting:
            job = waiting[-1]
            return f'<p class="note">Final job {job.number} is {_e(job.state)} ({job.epochs_done} epochs so far).</p>'
        return '<p class="note">No final model yet (run <code>hpsearch promote</code>).</p>'
    job = jobs[-1]
    trial_number = store.trial_by_id(job.trial_id).number
    classes, slices = store.final_evaluation(job.id)
    parts = [
        f"<p>Final job {job.number}: trial #{trial_number} retrained on <code>{_e(job.train_on)}</code> for "
        f"{job.epochs_done} epochs (best epoch {job.best_epoch}, {_e(study.objective_name)} = "
        f"{_fmt(job.objective)}); parameters {_params_html(job.params)}.</p>",
        _table(["test metric", "value"], [[_e(k), _fmt(v)] for k, v in (job.test_metrics or {}).items()]),
    ]
    if job.confusion_matrix:
        heatmap = _figure_html(_confusion_figure(job.confusion_matrix), "fig-confusion")
        parts.append(f'<div class="plot" id="plot-confusion">{heatmap}</div>')
    if classes:
        rows = [[_e(c.class_label), _fmt(c.precision), _fmt(c.recall), _fmt(c.f1), str(c.support)] for c in classes]
        parts.append(_table(["class", "precision", "recall", "F1", "support"], rows))
    if slices:
        rows = [
            [_e(r.slice), _e(r.slice_value), _fmt(r.threshold), str(r.count)]
            + [
                _fmt(v) if v is not None else "-"
                for v in (r.accuracy, r.false_positive_rate, r.false_negative_rate, r.auc)
            ]
            for r in slices
        ]
        parts.append(_table(["slice", "value", "threshold", "n", "accuracy", "FPR", "FNR", "AUC"], rows))
    files = [[_e(a.kind), f"<code>{_e(a.uri)}</code>", _e(a.sha256[:16])] for a in store.final_artifacts(job.id)]
    parts.append(_table(["export", "path", "sha256"], files))
    return "\n".join(parts)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _confusion_figure(confusion: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    labels = [_t(label) for label in confusion["labels"]]
    matrix = confusion["matrix"]
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    figure.update_xaxes(title_text="predicted", type="category")
    figure.update_yaxes(title_text="true", type="category", autorange="reversed")
    return _layout(figure, 200 + 30 * len(labels))


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _trials_section(data: _Data) -> str:
    if not data.trials:
        return '<p class="note">No trial yet.</p>'
    fidelity = data.multi_fidelity
    best_id = data.best.id if data.best is not None else None
    by_id = data.by_id
    head = ["#", "state"] + (["bracket", "rung", "from"] if fidelity else [])
    head += [_e(data.study.objective_name), "best epoch", "epochs", "worker", "seconds", "params", "error"]
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for trial in data.trials:
        worker = data.workers.get(trial.worker_id) if trial.worker_id is not None else None
        parent = by_id.get(trial.parent_trial_id) if trial.parent_trial_id is not None else None
        cells = [f'<td class="num">{trial.number}</td>', f"<td>{_e(trial.state)}</td>"]
        if fidelity:
            cells += [
                f'<td class="num">{_cell(trial.bracket)}</td>',
                f'<td class="num">{_cell(trial.rung)}</td>',
                f'<td class="num">{f"#{parent.number}" if parent else ""}</td>',
            ]
        epochs = f"{trial.epochs_done}/{trial.budget_epochs}"
        if trial.initial_epoch:
            epochs += f" (from {trial.initial_epoch})"
        error = _first_line(trial.error)
        cells += [
            f'<td class="num">{_cell(trial.objective)}</td>',
            f'<td class="num">{_cell(trial.best_epoch)}</td>',
            f'<td class="num">{epochs}</td>',
            f"<td>{_e(worker.name) if worker else ''}</td>",
            f'<td class="num">{_seconds(trial.duration_seconds)}</td>',
            f"<td>{_params_html(trial.params)}</td>",
            f'<td title="{_e(trial.error or "")}">{_e(error)}</td>',
        ]
        row_class = ' class="best"' if trial.id == best_id else ""
        lines.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "" if value is None else _e(_fmt(value))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
