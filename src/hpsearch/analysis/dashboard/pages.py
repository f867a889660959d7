"""The dashboard's pages as :class:`~hpsearch.analysis.dashboard.layout.View` objects: studies, study (the
report's sections, a Pareto front and a paged trials table), trial, workers and final models.

The study page reuses the report: :func:`~hpsearch.analysis.report.data.load_report_data` reads the study
once (one snapshot transaction) and :func:`~hpsearch.analysis.report.page.section_parts` builds its figures
and escaped summary; this module adds what a live page needs around them.

Example::

    >>> view = study_view(store, "mnist_mlp")
    >>> [s.key for s in view.sections][:3]
    ['summary', 'history', 'parallel']
"""

from __future__ import annotations

from typing import Any

from hpsearch.analysis.dashboard import data as api
from hpsearch.analysis.dashboard.figures import metrics_figure, pareto_figure
from hpsearch.analysis.dashboard.importance import Importances
from hpsearch.analysis.dashboard.layout import Section, View, cell, note, path_of, table
from hpsearch.analysis.report import figures
from hpsearch.analysis.report.data import ReportData, class_label_names, load_report_data
from hpsearch.analysis.report.page import escape, section_parts
from hpsearch.analysis.report.plotting import figure_json, fmt
from hpsearch.store import Store

_e = escape
_STUDY_SECTIONS = (
    ("summary", "Summary"),
    ("history", "Optimization history"),
    ("pareto", "Pareto front"),
    ("parallel", "Parallel coordinates"),
    ("importance", "Parameter importance"),
    ("curves", "Learning curves"),
    ("slices", "Slices"),
    ("timeline", "Worker timeline"),
    ("final", "Final model"),
)


def _link(href: str, text: object) -> str:
    return f'<a href="{_e(href)}">{_e(text)}</a>'


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    value = int(value)
    return f"{value // 3600}h{value % 3600 // 60:02d}m" if value >= 3600 else f"{value // 60}m{value % 60:02d}s"


def _when(value: str | None) -> str:
    return "" if not value else _e(value[:19].replace("T", " "))


def studies_view(store: Store) -> View:
    """Every study in a sortable table (click a heading). Example: ``studies_view(store).sections[0].key``."""
    rows = []
    for s in api.list_studies(store):
        progress = f"{s['finished']}/{s['max_trials']}"
        share = min(1.0, s["finished"] / s["max_trials"]) if s["max_trials"] else 0.0
        rows.append(
            [
                _link(path_of("studies", s["name"]), s["name"]),
                f'<span class="state {_e(s["state"])}">{_e(s["state"])}</span>',
                f'<progress max="1" value="{share:.3f}"></progress> {progress}',
                cell(s["completed"]),
                cell(s["best_objective"]) + f' <span class="muted">{_e(s["objective_name"])}</span>',
                f"{s['running']} / {s['queued']}",
                cell(s["workers_alive"]),
                _e(s["algorithm"]),
                _when(s["first_started_at"]),
                _seconds(s["elapsed_seconds"]),
            ]
        )
    head = ["study", "state", "progress", "completed", "best", "running / queued", "workers", "algorithm"]
    head += ["started (UTC)", "elapsed"]
    body = table(head, rows, "sortable") if rows else note("No study in this database yet.")
    return View("Studies", [Section("studies", "Studies", body)])


def study_view(store: Store, name: str, importances: Importances | None = None) -> View:
    """A study's report sections (live), its Pareto front when it has several objectives, and the paged
    trials table the page's script fills from the JSON API. With ``importances`` the parameter importance
    comes from there (computed in the background), else it is computed now (seconds).

    Example: ``study_view(store, "mnist_mlp", Importances())``."""
    data = load_report_data(store, name)
    parts = section_parts(data, importances.get(data) if importances is not None else None)
    sections = []
    for key, title in _STUDY_SECTIONS:
        if key == "pareto":
            if not data.study.objectives or len(data.study.objectives) < 2:
                continue
            figure = pareto_figure(data)
            html, plot = (note(figure), None) if isinstance(figure, str) else ("", figure_json(figure))
        elif key == "final":
            html, plot = _final_summary(data), None
        else:
            part = parts[key]
            html = (_counts(data) + part.html) if key == "summary" else part.html
            plot = figure_json(part.figure) if part.figure is not None else None
        sections.append(Section(key, title, html, plot))
    sections.append(Section("trials", "Trials", _trials_controls(data), live=False))
    return View(f"Study {data.study.name}", sections, [("/", "Studies")])


def _counts(data: ReportData) -> str:
    """Counts by state, each in an element the browser test (and the reader) can find."""
    items = "".join(
        f'<span class="count"><b data-count="{_e(state)}">{n}</b> {_e(state.lower())}</span>'
        for state, n in data.counts.items()
    )
    return f'<p class="counts">{items}</p>'


def _final_summary(data: ReportData) -> str:
    link = _link(path_of("studies", data.study.name, "final"), "all final models")
    job = data.final
    if job is None:
        return f'<p class="note">No final model yet (run <code>hpsearch promote</code>).</p><p>{link}</p>'
    metrics = ", ".join(f"<code>{_e(k)}={cell(v)}</code>" for k, v in (job.test_metrics or {}).items())
    return (
        f"<p>Final job {job.number}: {_e(job.state)}, trial #{cell(job.trial_number)}, {job.epochs_done} epochs, "
        f"{_e(data.study.objective_name)} = {cell(job.objective)}. {metrics}</p><p>{link}</p>"
    )


def _trials_controls(data: ReportData) -> str:
    """The trials table's filters and pager; ``dashboard.js`` fills the table from the trials API."""
    api_url = path_of("api", "studies", data.study.name, "trials")
    base = path_of("studies", data.study.name, "trials")
    states = "".join(
        f'<label><input type="checkbox" name="state" value="{s}"> {s.lower()}</label> ' for s in data.counts
    )
    sorts = "".join(f'<option value="{k}">{k}</option>' for k in ("number", "objective", "duration", "finished"))
    return f"""<form id="trial-filters" class="filters" data-api="{_e(api_url)}" data-base="{_e(base)}"
data-objective="{_e(data.study.objective_name)}">{states}
<label>sort <select name="sort">{sorts}</select></label>
<label>order <select name="order"><option value="asc">ascending</option><option value="desc">descending</option>
</select></label>
<label>per page <select name="limit"><option>25</option><option selected>50</option><option>200</option></select>
</label></form>
<p class="pager"><button type="button" id="trials-prev">previous</button> <span id="trials-range"></span>
<button type="button" id="trials-next">next</button></p>
<table id="trials-table"><thead></thead><tbody></tbody></table>"""


def trial_view(store: Store, name: str, number: int) -> View:
    """A trial: summary, parameters, every metric per epoch, attempts with their errors, checkpoints.
    Example: ``trial_view(store, "mnist_mlp", 3)``."""
    detail = api.trial_detail(store, name, number)
    trial = detail["trial"]
    study = detail["study"]
    parent = detail["parent_number"]
    summary = [
        ("State", _e(trial["state"])),
        (_e(detail["objective_name"]), cell(trial["objective"])),
        ("Best epoch", cell(trial["best_epoch"])),
        ("Epochs", f"{trial['epochs_done']} of {trial['budget_epochs']} (from {trial['initial_epoch']})"),
        ("Promoted from", "" if parent is None else _link(path_of("studies", study, "trials", parent), f"#{parent}")),
        ("Bracket / rung", f"{cell(trial['bracket'])} / {cell(trial['rung'])}"),
        ("Retries", cell(trial["retries"])),
        ("Started / finished (UTC)", f"{_when(trial['started_at'])} / {_when(trial['finished_at'])}"),
        ("Duration", _seconds(trial["duration_seconds"])),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in summary)
    error = f"<h3>Error</h3><pre>{_e(trial['error'])}</pre>" if trial["error"] else ""
    params = table(["parameter", "value"], [[_e(k), cell(v)] for k, v in trial["params"].items()])
    attempts = table(
        ["attempt", "worker id", "start epoch", "last checkpoint", "outcome", "started (UTC)", "ended (UTC)"],
        [
            [
                *(str(a["attempt"]), cell(a["worker_id"]), str(a["start_epoch"]), cell(a["last_checkpoint_epoch"])),
                *(_e(a["outcome"] or "RUNNING"), _when(a["started_at"]), _when(a["ended_at"])),
            ]
            for a in detail["attempts"]
        ],
    )
    files = [[_e(a["kind"]), cell(a["epoch"]), f"<code>{_e(a['uri'])}</code>", f"<code>{_e(a['sha256'])}</code>"]
             for a in detail["artifacts"]]  # fmt: skip
    figure = metrics_figure(detail["metrics"])
    curves = (note(figure), None) if isinstance(figure, str) else ("", figure_json(figure))
    sections = [
        Section("trial", "Trial", f'<dl class="summary">{items}</dl>{error}'),
        Section("params", "Parameters", params),
        Section("metrics", "Metrics per epoch", curves[0], curves[1]),
        Section("attempts", "Attempts", attempts if detail["attempts"] else note("Not claimed yet.")),
        Section("checkpoints", "Checkpoints", table(["kind", "epoch", "path", "sha256"], files) if files else
                note("No checkpoint recorded.")),
    ]  # fmt: skip
    crumbs = [("/", "Studies"), (path_of("studies", study), f"Study {study}")]
    return View(f"Trial #{trial['number']} of {study}", sections, crumbs)


def workers_view(store: Store) -> View:
    """Every worker: host, GPU, state, last heartbeat, current trial and busy share.
    Example: ``workers_view(store)``."""
    rows = []
    for w in api.list_workers(store):
        current = w["current"]
        trial = (
            _link(path_of("studies", current["study"], "trials", current["number"]), f"{current['study']} #"
                  f"{current['number']}") + f" ({current['epochs_done']}/{current['budget_epochs']} epochs)"
            if current else ""
        )  # fmt: skip
        share = "" if w["busy_share"] is None else fmt(100.0 * w["busy_share"]) + "%"
        state = w["state"] if w["alive"] or w["state"] == "STOPPED" else f"{w['state']} (silent)"
        rows.append(
            [_e(w["name"]), _e(w["host"]), cell(w["pid"]), cell(w["gpu"]), _e(state), _when(w["last_heartbeat_at"]),
             _seconds(w["heartbeat_age_seconds"]) + " ago", trial, share, cell(w["attempts"])]
        )  # fmt: skip
    head = ["worker", "host", "pid", "GPU", "state", "last heartbeat (UTC)", "age", "current trial", "busy", "attempts"]
    body = table(head, rows, "sortable") if rows else note("No worker has registered yet.")
    return View("Workers", [Section("workers", "Workers", body)], [("/", "Studies")])


def final_view(store: Store, name: str) -> View:
    """A study's final models: test metrics, confusion matrix, per-class and per-slice tables, exports with
    their sha256. Example: ``final_view(store, "mnist_mlp")``."""
    result = api.final_models(store, name)
    sections = [_final_job(job) for job in result["jobs"]]
    if not sections:
        sections = [Section("none", "Final models", note("No final model yet (run hpsearch promote)."))]
    crumbs = [("/", "Studies"), (path_of("studies", result["study"]), f"Study {result['study']}")]
    return View(f"Final models of {result['study']}", sections, crumbs)


def _final_job(job: dict[str, Any]) -> Section:
    parts = [
        f"<p>{_e(job['state'])}: trial #{job['trial_number']} retrained on <code>{_e(job['train_on'])}</code>, "
        f"{job['epochs_done']} of {job['epochs']} epochs (best {cell(job['best_epoch'])}), objective "
        f"{cell(job['objective'])}.</p>"
    ]
    if job["error"]:
        parts.append(f"<pre>{_e(job['error'])}</pre>")
    if job["test_metrics"]:
        parts.append(table(["test metric", "value"], [[_e(k), cell(v)] for k, v in job["test_metrics"].items()]))
    if job["classes"]:
        names = class_label_names(job["confusion_matrix"])  # names where the data loader gave them
        columns = ("precision", "recall", "f1", "support")
        parts.append(table(["class", "precision", "recall", "F1", "support"],
                           [[cell(names.get(str(c["class_label"]), c["class_label"])), *(cell(c[k]) for k in columns)]
                            for c in job["classes"]]))  # fmt: skip
    if job["slices"]:
        keys = ("slice", "slice_value", "threshold", "count", "accuracy", "false_positive_rate",
                "false_negative_rate", "auc")  # fmt: skip
        parts.append(table(["slice", "value", "threshold", "n", "accuracy", "FPR", "FNR", "AUC"],
                           [[cell(s[k]) for k in keys] for s in job["slices"]]))  # fmt: skip
    exports = [[_e(a["kind"]), f"<code>{_e(a['uri'])}</code>", f"<code>{_e(a['sha256'])}</code>", cell(a["size_bytes"])]
               for a in job["exports"]]  # fmt: skip
    if exports:
        parts.append(table(["export", "path", "sha256", "bytes"], exports))
    confusion = job["confusion_matrix"]
    figure = figure_json(figures.confusion_figure(confusion)) if confusion else None
    return Section(f"job-{job['number']}", f"Final job {job['number']}", "".join(parts), figure)
