"""Commands that read a study: status, trials, best, show, promote, models, report, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hpsearch.analysis.pareto import pareto_trials
from hpsearch.api import RETRY_SECONDS, load_study, run_final_job_here
from hpsearch.cli.app import DbOption, JsonOption, TrialNumber, app, err, out
from hpsearch.cli.progress import FinalJobProgress
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.store import Store, mask_url, open_store
from hpsearch.store.db import scrub
from hpsearch.store.records import StudyRecord as Study
from hpsearch.store.records import TrialRecord as Trial

# --- reading ---------------------------------------------------------------------------------------------


def _format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _trial_dict(trial: Trial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state,
        "objective": trial.objective,
        "best_epoch": trial.best_epoch,
        "epochs_done": trial.epochs_done,
        "params": trial.params,
        "duration_seconds": trial.duration_seconds,
        "error": trial.error.splitlines()[0] if trial.error else None,
        "bracket": trial.bracket,
        "rung": trial.rung,
        "parent_trial_id": trial.parent_trial_id,
    }


def _print_front(store: Store, study: Study, *, as_json: bool) -> None:
    names = [o["name"] for o in study.objectives or []]
    front = pareto_trials(store, study)
    if as_json:
        rows = [{**_trial_dict(t), "values": dict(zip(names, t.objective_values or [], strict=True))} for t in front]
        out.print_json(data={"study": study.name, "objectives": study.objectives, "front": rows})
        return
    table = Table("#", *names, "best epoch", "params", title=f"Pareto front of {study.name} ({len(front)} trials)")
    for trial in front:
        values = [f"{v:.4g}" for v in trial.objective_values or []]
        table.add_row(str(trial.number), *values, str(trial.best_epoch), _format_params(trial.params))
    out.print(table)


def print_best(store: Store, study: Study, *, as_json: bool) -> None:
    if len(study.objectives or []) > 1:
        _print_front(store, study, as_json=as_json)
        return
    best = store.best_trial(study)
    if as_json:
        payload = {"study": study.name, "objective": study.objective_name, "direction": study.direction}
        out.print_json(data={**payload, "best": _trial_dict(best) if best else None})
        return
    if best is None:
        out.print(f"study {study.name}: no completed trial yet")
        return
    out.print(
        f"best trial {best.number}: {study.objective_name} = {best.objective:.4f} at epoch {best.best_epoch}",
        highlight=False,
    )
    for name, value in best.params.items():
        out.print(f"  {name} = {value!r}", highlight=False)


@app.command()
def best(study: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """The best completed trial (params, objective, best epoch), or the Pareto front of several objectives."""
    store = open_store(db)
    print_best(store, store.study(study), as_json=as_json)


@app.command()
def status(
    study: Annotated[str | None, typer.Argument()] = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Every study (or one): state, trial counts and the best objective."""
    store = open_store(db)
    studies = [store.study(study)] if study else store.studies()
    rows: list[dict[str, Any]] = []
    for item in studies:
        best_trial = store.best_trial(item)
        rows.append(
            {
                "study": item.name,
                "state": item.state,
                "algorithm": item.algorithm,
                "objective": item.objective_name,
                "direction": item.direction,
                "max_trials": item.max_trials,
                "trials": store.counts(item.id),
                "best": best_trial.objective if best_trial else None,
                "best_trial": best_trial.number if best_trial else None,
                "message": item.message,
                # algorithm = "auto": what it picked at creation and why (None otherwise).
                "algorithm_reason": (item.algorithm_choice or {}).get("reason"),
                "waiting_for": _waiting_for(store, item),
            }
        )
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("study", "state", "algorithm", "done/max", "running", "queued", "failed", "best")
    for row in rows:
        counts = row["trials"]
        done = counts["COMPLETED"] + counts["PRUNED"] + counts["FAILED"]
        best_text = f"{row['objective']}={row['best']:.4f}" if row["best"] is not None else "-"
        table.add_row(
            row["study"],
            f"{row['state']} (waiting)" if row["waiting_for"] else row["state"],
            row["algorithm"],
            f"{done}/{row['max_trials']}",
            str(counts["RUNNING"]),
            str(counts["QUEUED"]),
            str(counts["FAILED"]),
            best_text,
        )
    out.print(table)
    for row in rows:
        if row["algorithm_reason"]:
            out.print(f"study {row['study']}: algorithm {row['algorithm_reason']}", highlight=False, markup=False)
    for row in rows:
        if row["waiting_for"]:
            out.print(_waiting_hint(row["study"], row["waiting_for"]), highlight=False, markup=False)


def _waiting_for(store: Store, study: Study) -> list[str]:
    """What a RUNNING study lacks to make progress: a coordinator (plans and queues trials) and workers (train
    them). A study made by `study create`, or left by a killed `hpsearch run`, is RUNNING with neither."""
    if study.state != "RUNNING":
        return []
    coordinator, workers = store.study_activity(study.id)
    return [name for name, missing in (("coordinator", not coordinator), ("workers", not workers)) if missing]


def _waiting_hint(name: str, missing: list[str]) -> str:
    starts = {"coordinator": "`hpsearch coordinator`", "workers": "`hpsearch worker`"}
    nothing = " and no ".join("coordinator" if m == "coordinator" else "worker" for m in missing)
    return (
        f"study {name} waits: no {nothing} is running; start `hpsearch run STUDY_FILE` here, "
        f"or {' and '.join(starts[m] for m in missing)} processes (any machine with --db)"
    )


@app.command()
def trials(
    study: str,
    db: DbOption = None,
    sort: Annotated[str, typer.Option(help="number | objective")] = "number",
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """The trials of a study."""
    if sort not in ("number", "objective"):
        raise UsageError("--sort", f"must be 'number' or 'objective', not {sort!r}")
    store = open_store(db)
    item = store.study(study)
    found = store.trials(item.id, sort=sort, limit=limit, direction=item.direction)
    # A parent (Hyperband, ASHA, BOHB: the trial this one continues) is shown by its number, not its row id;
    # one outside a --limit page is looked up.
    numbers = {t.id: t.number for t in found}
    for parent in {t.parent_trial_id for t in found if t.parent_trial_id is not None} - numbers.keys():
        numbers[parent] = store.trial_by_id(parent).number
    rows = [
        {**_trial_dict(t), "parent": None if t.parent_trial_id is None else numbers[t.parent_trial_id]} for t in found
    ]
    if as_json:
        out.print_json(data=rows)
        return
    # Bracket, rung and parent columns only for the algorithms that set them (the multi-fidelity ones).
    staged = any(row["bracket"] is not None or row["rung"] is not None or row["parent"] is not None for row in rows)
    extra = ("bracket", "rung", "parent") if staged else ()
    table = Table("#", "state", item.objective_name, "best epoch", "epochs", *extra, "params", "error")
    for row in rows:
        objective = f"{row['objective']:.4f}" if row["objective"] is not None else "-"
        cells = [_dash(row[name]) for name in extra]
        table.add_row(
            str(row["number"]),
            row["state"],
            objective,
            str(row["best_epoch"] or "-"),
            str(row["epochs_done"]),
            *cells,
            _format_params(row["params"]),
            row["error"] or "",
        )
    out.print(table)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


@app.command()
def show(study: str, number: TrialNumber, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One trial: params, state, objective, attempts and its learning curve."""
    store = open_store(db)
    item = store.study(study)
    trial = store.trial(item.id, number)
    curve = store.metrics(trial.id)
    claims = store.attempts(trial.id)
    workers = store.workers_by_id([a.worker_id for a in claims if a.worker_id is not None])
    attempts: list[dict[str, Any]] = [
        {
            "attempt": a.attempt,
            "worker": _worker_name(workers, a.worker_id),
            "start_epoch": a.start_epoch,
            "last_checkpoint_epoch": a.last_checkpoint_epoch,
            "started_at": a.started_at.isoformat(sep=" ", timespec="seconds"),
            "ended_at": a.ended_at.isoformat(sep=" ", timespec="seconds") if a.ended_at else None,
            "outcome": a.outcome,
        }
        for a in claims
    ]
    if as_json:
        out.print_json(data={**_trial_dict(trial), "error": trial.error, "attempts": attempts, "curve": curve})
        return
    out.print(f"trial {trial.number} of {item.name}: {trial.state}", highlight=False)
    out.print(f"  params: {_format_params(trial.params)}", highlight=False)
    objective = f"{trial.objective:.4f}" if trial.objective is not None else "-"
    out.print(f"  {item.objective_name} = {objective} at epoch {trial.best_epoch}", highlight=False)
    if trial.error:
        out.print(f"  error: {trial.error}", highlight=False, markup=False)
    claims_table = Table("attempt", "worker", "from epoch", "started (UTC)", "ended (UTC)", "outcome", title="attempts")
    for row in attempts:
        claims_table.add_row(
            str(row["attempt"]),
            row["worker"] or "-",
            str(row["start_epoch"]),
            row["started_at"],
            row["ended_at"] or "-",
            row["outcome"] or ("running" if trial.state == "RUNNING" else "-"),
        )
    if attempts:
        out.print(claims_table)
    names = sorted({name for values in curve.values() for name in values})
    table = Table("epoch", *names, title="learning curve")
    for epoch, values in curve.items():
        table.add_row(str(epoch), *(f"{values[n]:.4f}" if values.get(n) is not None else "-" for n in names))
    out.print(table)


def _worker_name(workers: dict[int, Any], worker_id: int | None) -> str | None:
    """A worker's name, with its host unless the name holds it (``node-1-4242``)."""
    worker = workers.get(worker_id) if worker_id is not None else None
    if worker is None:
        return None
    return str(worker.name if worker.host in worker.name else f"{worker.name} ({worker.host})")


@app.command()
def promote(
    study: str,
    db: DbOption = None,
    trial: Annotated[int | None, typer.Option("--trial", help="Trial number (default: the best).")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Most epochs (default: \\[promote] epochs, else max_epochs).")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience on the validation split.")] = None,
    on: Annotated[str | None, typer.Option("--on", help="train | train+validation (default: \\[promote] on).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the job in this process, not on a worker.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Retrain the best (or a chosen) trial into the final model: early stopping, checkpoints, resume,
    test evaluation (per class, per slice and threshold) and export. Running it again resumes the job."""
    from hpsearch.control.promotion import plan_final_job

    store = open_store(db, retry_seconds=RETRY_SECONDS if local else 0.0)
    item = store.study(study)
    job, created = store.create_final_job(
        plan_final_job(store, item, trial_number=trial, epochs=epochs, patience=patience, on=on)
    )
    if not local:
        verb = "queued" if created else f"already {job.state}"
        out.print(f"final job {job.number} of {item.name}: {verb}; a worker runs it", highlight=False)
        return
    if job.state != "COMPLETED":
        console = err if as_json else out  # under --json, stdout carries the JSON document alone
        if job.epochs_done:
            console.print(f"final job {job.number}: resuming after epoch {job.epochs_done}", highlight=False)
        else:
            number = store.trial_by_id(job.trial_id).number
            text = f"final job {job.number}: retraining trial {number} ({job.epochs} epochs at most)"
            console.print(text, highlight=False)
        with FinalJobProgress(store, job.id, item.objective_name, console=console):
            job = run_final_job_here(store, job)
    _print_final_job(store, item, job.id, as_json=as_json)
    if job.state != "COMPLETED":
        last = (job.error or "").strip().splitlines()
        raise HpsearchError(f"final job {job.number}", f"{job.state}: {last[-1] if last else 'no result'}")


def _print_final_job(store: Store, study: Study, job_id: int, *, as_json: bool) -> None:
    job = store.final_job(job_id)
    artifacts = store.final_artifacts(job.id)
    classes, slices = store.final_evaluation(job.id)
    # The loader's class names travel in the confusion matrix's JSON; the rows keep the class index.
    confusion = job.confusion_matrix or {}
    names = dict(zip(map(str, confusion.get("labels") or []), confusion.get("class_names") or [], strict=False))
    if as_json:
        out.print_json(
            data={
                "study": study.name,
                "final_job": job.number,
                "state": job.state,
                "on": job.train_on,
                "epochs_done": job.epochs_done,
                "best_epoch": job.best_epoch,
                "objective": job.objective,
                "test_metrics": job.test_metrics,
                "confusion_matrix": job.confusion_matrix,
                "classes": [
                    {
                        "class": c.class_label,
                        "name": names.get(c.class_label),
                        "precision": c.precision,
                        "recall": c.recall,
                        "f1": c.f1,
                        "support": c.support,
                    }
                    for c in classes
                ],
                "slices": len(slices),
                "artifacts": [{"kind": a.kind, "uri": a.uri, "sha256": a.sha256} for a in artifacts],
            }
        )
        return
    out.print(
        f"final job {job.number} of {study.name}: {job.state}, {job.epochs_done} epochs on {job.train_on}, "
        f"best epoch {job.best_epoch}",
        highlight=False,
    )
    for name, value in (job.test_metrics or {}).items():
        out.print(f"  test {name} = {value:.4f}" if value is not None else f"  test {name} = -", highlight=False)
    if classes:
        table = Table("class", "precision", "recall", "F1", "n", title="test classes")
        for c in classes:
            label = f"{names[c.class_label]} ({c.class_label})" if c.class_label in names else c.class_label
            table.add_row(label, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support))
        out.print(table)
    if slices:
        table = Table("slice", "value", "threshold", "n", "accuracy", "FPR", "FNR", "AUC", title="test slices")
        for row in slices:
            cells = (row.accuracy, row.false_positive_rate, row.false_negative_rate, row.auc)
            table.add_row(
                row.slice,
                row.slice_value,
                f"{row.threshold:g}",
                str(row.count),
                *(f"{v:.3f}" if v is not None else "-" for v in cells),
            )
        out.print(table)
    for artifact in artifacts:
        out.print(f"  {artifact.kind}: {artifact.uri}", highlight=False)


@app.command()
def models(study: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """The study's final jobs and their exported models (kind, path, size, sha256)."""
    store = open_store(db)
    item = store.study(study)
    rows: list[dict[str, Any]] = []
    for job in store.final_jobs(item.id):
        for artifact in store.final_artifacts(job.id):
            rows.append(
                {
                    "final_job": job.number,
                    "state": job.state,
                    "kind": artifact.kind,
                    "uri": artifact.uri,
                    "size_bytes": artifact.size_bytes,
                    "sha256": artifact.sha256,
                    "test_metrics": job.test_metrics,
                }
            )
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("job", "kind", "path", "size", "sha256", title=f"models of {item.name}")
    for row in rows:
        table.add_row(str(row["final_job"]), row["kind"], row["uri"], f"{row['size_bytes']:,}", row["sha256"][:12])
    out.print(table)


@app.command()
def report(
    study: str,
    db: DbOption = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")] = Path("report.html"),
) -> None:
    """One self-contained HTML page (no network needed) with the study's plots and tables."""
    path = load_study(study, db=db).report(output)
    out.print(f"wrote {Path(path).resolve()}", highlight=False)


@app.command()
def export(
    study: str,
    db: DbOption = None,
    fmt: Annotated[str, typer.Option("--format", help="csv | parquet | json")] = "csv",
    metrics: Annotated[bool, typer.Option("--metrics", help="The learning curves instead of the trials.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default: standard output).")] = None,
    optuna_url: Annotated[
        str | None, typer.Option("--optuna", help="Copy the study into this Optuna storage URL instead.")
    ] = None,
) -> None:
    """Trials or learning curves as CSV, Parquet or JSON; or a copy in Optuna's storage (optuna-dashboard)."""
    from hpsearch.analysis.export import metrics_frame, to_optuna, trials_frame, write_frame

    store = open_store(db)
    item = store.study(study)
    if optuna_url is not None:
        import optuna
        import sqlalchemy

        try:
            copied = to_optuna(store, item, optuna_url)
        except (optuna.exceptions.OptunaError, sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--optuna {mask_url(optuna_url)}", scrub(first_line, optuna_url)) from None
        out.print(f"copied {copied} trials of {study} to {mask_url(optuna_url)}", highlight=False)
        return
    frame = metrics_frame(store, item) if metrics else trials_frame(store, item)
    text = write_frame(frame, fmt, output)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    elif output is not None:
        what = "metric rows" if metrics else "trials"
        out.print(f"wrote {len(frame)} {what} of {item.name} to {output.absolute()} ({fmt})", highlight=False)
