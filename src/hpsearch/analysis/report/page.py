"""The report's HTML page: layout, sections and tables, from :class:`~hpsearch.analysis.report.data.ReportData`.

The page needs no network: plotly.js is embedded once, inline, and a Content-Security-Policy forbids the
browser to fetch anything. Every string that comes from a user (study, parameter and worker names, parameter
values, errors) is HTML-escaped with :func:`escape` here (the figures escape theirs for plotly).

Example::

    >>> page = render_page(load_report_data(store, "mnist_mlp"))
    >>> page.startswith("<!DOCTYPE html>")
    True
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpsearch.analysis.report import figures
from hpsearch.analysis.report.curves import curves_figure
from hpsearch.analysis.report.data import FinalModel, ReportData, class_label_names
from hpsearch.analysis.report.importance import parameter_importances
from hpsearch.analysis.report.plotting import Figure, fmt

# The browser may run the inline scripts (plotly.js compiles WebGL shaders with `new Function`, hence
# 'unsafe-eval') and show data/blob images, and nothing else: no request ever leaves the page.
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; worker-src blob:"
)
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

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


def escape(value: object) -> str:
    """HTML-escape a user string for the page (quotes too, so it is also safe in attributes).

    Example: ``escape('<a href="x">')`` is ``"&lt;a href=&quot;x&quot;&gt;"``.
    """
    return html.escape(str(value), quote=True)


_e = escape  # short: it wraps almost every value below


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


@dataclass(frozen=True)
class Part:
    """A section's content: escaped HTML, and the plotly figure drawn above it (None: the HTML alone).
    Example: ``section_parts(data)["history"].figure`` is a figure dict (:data:`~.plotting.Figure`), or None with
    a note in ``html``."""

    html: str = ""
    figure: Figure | None = None


def section_parts(
    data: ReportData, importance: tuple[dict[str, float] | None, str] | None = None
) -> dict[str, Part]:
    """The summary and figure sections (summary, history, parallel, importance, curves, slices, timeline) as
    figures and escaped HTML, for pages that draw the figures themselves (the live dashboard). ``importance``:
    :func:`parameter_importances` computed elsewhere (it is the slow part), else computed here.

    Example: ``{key: part.figure is not None for key, part in section_parts(data).items()}``.
    """
    importances, importance_note = importance if importance is not None else parameter_importances(data)
    builders: dict[str, Callable[[ReportData], Any]] = {
        "history": figures.history_figure,
        "parallel": figures.parallel_figure,
        "curves": curves_figure,
        "slices": lambda d: figures.slices_figure(d, importances),
        "timeline": figures.timeline_figure,
    }
    parts = {"summary": Part(_summary_section(data))}
    for key, build in builders.items():
        figure = build(data)
        parts[key] = Part(f'<p class="note">{_e(figure)}</p>') if isinstance(figure, str) else Part(figure=figure)
    if importances:
        note = f'<p class="note">{_e(importance_note)}</p>' if importance_note else ""
        parts["importance"] = Part(note, figures.importance_figure(importances))
    else:
        parts["importance"] = Part(f'<p class="note">{_e(importance_note) or "No parameter importance to show."}</p>')
    return parts


def render_page(data: ReportData) -> str:
    """The whole report as one self-contained HTML page (no network access needed or made).

    Example: ``Path("report.html").write_text(render_page(load_report_data(store, "mnist_mlp")))``.
    """
    from plotly.offline import get_plotlyjs

    bodies: dict[str, str] = {}
    for key, part in section_parts(data).items():
        figure = "" if part.figure is None else _figure_html(part.figure, f"fig-{key}")
        plot = f'<div class="plot" id="plot-{key}">{figure}</div>' if figure else ""
        bodies[key] = plot + part.html
    bodies["final-model"] = _final_model_section(data)
    bodies["trials"] = _trials_section(data)
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


def _summary_section(data: ReportData) -> str:
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
                f"#{best.number}: {_e(study.objective_name)} = <b>{fmt(best.objective)}</b> "
                f"at epoch {best.best_epoch} of {best.epochs_done}",
            )
        )
        rows.append(("Best parameters", _params_html(best.params)))
    if len(objectives) > 1:
        rows.append(("Note", "<span class='note'>The figures rank trials by the first objective.</span>"))
    items = "\n".join(f"<dt>{key}</dt><dd>{value}</dd>" for key, value in rows)
    return f'<dl class="summary">\n{items}\n</dl>'


def _params_html(params: dict[str, Any]) -> str:
    return ", ".join(f"<code>{_e(k)}={_e(fmt(v))}</code>" for k, v in params.items()) or "(none)"


def _figure_html(figure: Figure, div_id: str) -> str:
    """The figure's div and the inline script that draws it. Plotly writes "<", ">" and "/" in the figure's
    JSON as \\u escapes, so no string in it (parcoords tick labels are unescaped) can close the script;
    checked here so that a plotly that stopped doing so fails loudly instead of emitting a broken page."""
    import plotly.io as pio

    # validate=False: the figures are plain dicts already checked by the tests; validating 10,000 points
    # took most of a second.
    text = str(
        pio.to_html(
            figure,
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config=_PLOTLY_CONFIG,
            default_width="100%",
            validate=False,
        )
    )
    opening = text.index(">", text.index("<script")) + 1
    if "<" in text[opening : text.rindex("</script>")]:
        raise RuntimeError(f"plotly left a '<' in the script of figure {div_id}; refusing to embed it")
    return text


def _final_model_section(data: ReportData) -> str:
    """The newest completed final job (``hpsearch promote``): test metrics, confusion-matrix heatmap,
    per-class and per-slice tables, and its exported files."""
    job: FinalModel | None = data.final
    if job is None:
        return '<p class="note">No final model yet (run <code>hpsearch promote</code>).</p>'
    if job.state != "COMPLETED":
        return f'<p class="note">Final job {job.number} is {_e(job.state)} ({job.epochs_done} epochs so far).</p>'
    objective_name = data.study.objective_name
    parts = [
        f"<p>Final job {job.number}: trial #{job.trial_number} retrained on <code>{_e(job.train_on)}</code> for "
        f"{job.epochs_done} epochs (best epoch {job.best_epoch}, {_e(objective_name)} = "
        f"{fmt(job.objective)}); parameters {_params_html(job.params)}.</p>",
        _table(["test metric", "value"], [[_e(k), fmt(v)] for k, v in (job.test_metrics or {}).items()]),
    ]
    if job.confusion_matrix:
        heatmap = _figure_html(figures.confusion_figure(job.confusion_matrix), "fig-confusion")
        parts.append(f'<div class="plot" id="plot-confusion">{heatmap}</div>')
    if job.classes:
        names = class_label_names(job.confusion_matrix)  # names where the data loader gave them
        rows = [
            [_e(names.get(c.class_label, c.class_label)), fmt(c.precision), fmt(c.recall), fmt(c.f1), str(c.support)]
            for c in job.classes
        ]
        parts.append(_table(["class", "precision", "recall", "F1", "support"], rows))
    if job.slices:
        rows = [
            [_e(r.slice), _e(r.slice_value), fmt(r.threshold), str(r.count)]
            + [
                fmt(v) if v is not None else "-"
                for v in (r.accuracy, r.false_positive_rate, r.false_negative_rate, r.auc)
            ]
            for r in job.slices
        ]
        parts.append(_table(["slice", "value", "threshold", "n", "accuracy", "FPR", "FNR", "AUC"], rows))
    files = [[_e(a.kind), f"<code>{_e(a.uri)}</code>", _e(a.sha256[:16])] for a in job.exports]
    parts.append(_table(["export", "path", "sha256"], files))
    return "\n".join(parts)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _first_line(text: str | None) -> str:
    if not text:
        return ""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _trials_section(data: ReportData) -> str:
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
    return "" if value is None else _e(fmt(value))


def _seconds(value: float | None) -> str:
    return "" if value is None else fmt(value)
