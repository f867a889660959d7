"""The ``hpsearch`` command: parse, call, print. Errors are one line ``error: <where>: <what>``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.paths import artifact_path, ensure_writable_root
from hpsearch.store import Store, StudyState, mask_url, open_store, resolve_url
from hpsearch.store.db import scrub
from hpsearch.store.models import Study, Trial, utcnow

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter search and AutoML for Keras 3.")
study_app = typer.Typer(no_args_is_help=True, help="Create, stop and resume studies.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(study_app, name="study")
app.add_typer(db_app, name="db")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_debug = False

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $HPSEARCH_DB, else sqlite:///hpsearch.db).")
]
ArtifactsOption = Annotated[
    Path, typer.Option("--artifacts", envvar="HPSEARCH_ARTIFACTS", help="Artifact root for checkpoints and models.")
]
# Workers and coordinators ride out a database restart this long (reconnecting with backoff).
RETRY_SECONDS = 600.0
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# Trial numbers are 32-bit integers in the database: a larger one is a usage error, not a driver error.
TrialNumber = Annotated[int, typer.Argument(min=0, max=2**31 - 1, help="The trial's number.")]


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    global _debug
    _debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


# --- studies ---------------------------------------------------------------------------------------------


@study_app.command("create")
def study_create(
    study_file: Path, db: DbOption = None, artifacts: ArtifactsOption = Path("hpsearch-artifacts")
) -> None:
    """Validate a study file, discover its search space and store the study."""
    from hpsearch.control.studies import create_study

    store = open_store(db, create=True)
    study, created = create_study(store, study_file, artifacts)
    verb = "created" if created else "already exists:"
    out.print(f"study {study.name} {verb} in {mask_url(resolve_url(db))} ({len(study.space['space'])} parameters)")


def _set_state(name: str, db: str | None, state: StudyState) -> None:
    store = open_store(db)
    study = store.study(name)
    store.set_study_state(
        study.id, state, f"{state.value.lower()} by `hpsearch study` at {utcnow():%Y-%m-%d %H:%M:%S} UTC"
    )
    out.print(f"study {name}: {state.value}")


@study_app.command("stop")
def study_stop(study: str, db: DbOption = None) -> None:
    """Stop a study: no new trials start; running ones are asked to stop."""
    _set_state(study, db, StudyState.STOPPED)


@study_app.command("resume")
def study_resume(study: str, db: DbOption = None) -> None:
    """Resume a stopped study."""
    _set_state(study, db, StudyState.RUNNING)


@app.command()
def gc(
    study: str,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; delete nothing.")] = False,
) -> None:
    """Free checkpoints no resume or promotion needs any more (the best trial's is kept)."""
    from hpsearch.analysis.retention import collect

    store = open_store(db)
    result = collect(store, store.study(study), dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    out.print(
        f"{study}: {verb} {result.freed} checkpoints ({result.freed_bytes / 1e6:.1f} MB); kept {result.kept}",
        highlight=False,
    )


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the schema to this version of hpsearch."""
    from hpsearch.store.db import head_revision

    open_store(db, create=True)
    out.print(f"{mask_url(resolve_url(db))} is at schema revision {head_revision()}")


# --- processes -------------------------------------------------------------------------------------------


@app.command()
def coordinator(
    db: DbOption = None,
    study: Annotated[list[str] | None, typer.Option("--study", help="Only these studies (repeatable).")] = None,
    exit_when_done: Annotated[bool, typer.Option(help="Exit when no watched study is running.")] = False,
    lease: Annotated[float, typer.Option(min=1, help="Seconds a standby waits before taking a study over.")] = 10.0,
) -> None:
    """Run the coordinator loop for every running study (or the named ones). Start a second one elsewhere
    as a standby: it takes over a study within two lease periods of the first one's death."""
    from hpsearch.control.coordinator import Coordinator

    logging.getLogger("hpsearch").setLevel(logging.INFO)
    store = open_store(db, retry_seconds=RETRY_SECONDS)
    loop = Coordinator(store, study, lease_seconds=lease)
    with _Progress(store, loop.running_studies, time.monotonic()) as progress:
        loop.run(until_done=exit_when_done, on_tick=progress)


@app.command()
def worker(
    db: DbOption = None,
    gpu: Annotated[str | None, typer.Option(help="GPU index for this worker's trials (CUDA_VISIBLE_DEVICES).")] = None,
    study: Annotated[str | None, typer.Option(help="Only run trials of this study.")] = None,
    max_trials: Annotated[int | None, typer.Option(min=1, help="Exit after this many trials.")] = None,
    idle_timeout: Annotated[float | None, typer.Option(min=0, help="Exit after this many idle seconds.")] = None,
    exit_when_done: Annotated[bool, typer.Option(help="Exit when --study is no longer running.")] = False,
) -> None:
    """Pull trials from the database and train them, one child process per trial."""
    from hpsearch.execution.worker import Worker

    logging.getLogger("hpsearch").setLevel(logging.INFO)
    Worker(
        open_store(db, retry_seconds=RETRY_SECONDS),
        gpu=gpu,
        study=study,
        max_trials=max_trials,
        idle_timeout=idle_timeout,
        exit_when_done=exit_when_done,
    ).run()


@app.command()
def run(
    study_file: Path,
    db: DbOption = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Local workers (default: the study's run.workers).")
    ] = None,
    artifacts: ArtifactsOption = Path("hpsearch-artifacts"),
) -> None:
    """Create (or resume) a study and run it here: the coordinator plus local worker processes."""
    from hpsearch.control.coordinator import Coordinator
    from hpsearch.control.studies import create_study

    url = resolve_url(db)
    store = open_store(url, create=True)
    study, created = create_study(store, study_file, artifacts)
    ensure_writable_root(study.artifact_root)  # a resumed study's root may have gone read-only or full
    log_dir = artifact_path(study.artifact_root, study.name, "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    if study.state != StudyState.RUNNING:
        store.set_study_state(study.id, StudyState.RUNNING)
    count = workers or study.spec["run"]["workers"]
    out.print(f"study {study.name} {'created' if created else 'resumed'}: {count} workers, {mask_url(url)}")
    logging.getLogger("hpsearch").setLevel(logging.WARNING)
    # The URL travels in the environment, not on the command line, where `ps` would show its password.
    env = {**os.environ, "HPSEARCH_DB": url}
    command = [sys.executable, "-m", "hpsearch", "worker", "--study", study.name, "--exit-when-done"]
    procs = [
        subprocess.Popen(command, env=env, stdout=(log_dir / f"worker-{i}.log").open("ab"), stderr=subprocess.STDOUT)
        for i in range(count)
    ]
    started = time.monotonic()
    try:
        with _Progress(store, lambda: [store.study_by_id(study.id)], started) as refresh:

            def on_tick() -> None:
                refresh()
                if all(p.poll() is not None for p in procs) and store.study_by_id(study.id).state == StudyState.RUNNING:
                    raise HpsearchError(f"study {study.name}", f"all workers exited; see {log_dir}")

            Coordinator(store, [study.name]).run(until_done=True, on_tick=on_tick)
        for proc in procs:
            proc.wait(timeout=120)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
    final = store.study_by_id(study.id)
    if final.state == StudyState.FAILED:
        raise HpsearchError(f"study {study.name}", final.message or "failed")
    _print_best(store, final, as_json=False)


@app.command()
def automl(
    data: Path,
    task: Annotated[
        str,
        typer.Option(
            help="image_classifier, image_regressor, text_classifier, text_regressor, "
            "structured_data_classifier or structured_data_regressor."
        ),
    ],
    target: Annotated[str | None, typer.Option(help="The CSV's label column.")] = None,
    time_limit: Annotated[str, typer.Option(help="Wall-time budget: seconds or '90s', '10m', '2h'.")] = "10m",
    db: DbOption = None,
    workers: Annotated[int, typer.Option(min=1, help="Local workers.")] = 2,
    max_trials: Annotated[int, typer.Option(min=1)] = 100,
    max_epochs: Annotated[int, typer.Option(min=1)] = 20,
    name: Annotated[str | None, typer.Option(help="Study name (default: DATA's stem and the task).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the generated study is written.")] = Path(
        "hpsearch-automl"
    ),
    artifacts: ArtifactsOption = Path("hpsearch-artifacts"),
) -> None:
    """AutoML from a data file: write a study for an AutoKeras task on DATA (.csv with --target, or .npz with
    x and y) and run it like `hpsearch run`, within --time-limit."""
    from hpsearch.execution.automl_data import write_study
    from hpsearch.spec import parse_duration

    try:
        seconds = float(parse_duration(time_limit))
    except (TypeError, ValueError):
        raise UsageError(
            "--time-limit", f"must be seconds or a duration such as '90s', '10m' (got {time_limit!r})"
        ) from None
    if seconds <= 0:
        raise UsageError("--time-limit", f"must be positive (got {time_limit!r})")
    study_file = write_study(
        data,
        task,
        target=target,
        time_limit=seconds,
        out_dir=out_dir,
        name=name,
        workers=workers,
        max_trials=max_trials,
        max_epochs=max_epochs,
    )
    out.print(f"wrote {study_file}", highlight=False)
    run(study_file, db=db, workers=workers, artifacts=artifacts)


class _Progress:
    """A live view of studies on a terminal; one line per change elsewhere (CI logs)."""

    def __init__(self, store: Store, studies: Callable[[], list[Study]], started: float) -> None:
        self.store, self.studies, self.started = store, studies, started
        self.live: Live | None = None
        self.last: dict[str, str] = {}

    def _line(self, study: Study) -> str:
        counts = self.store.counts(study.id)
        best = self.store.best_trial(study)
        best_text = f"{study.objective_name}={best.objective:.4f} (trial {best.number})" if best else "-"
        done = counts["COMPLETED"] + counts["PRUNED"] + counts["FAILED"]
        line = (
            f"{done}/{study.max_trials} done ({counts['FAILED']} failed), {counts['RUNNING']} running, "
            f"{counts['QUEUED']} queued, best {best_text}"
        )
        wall_time = study.spec["search"].get("max_wall_time")
        if wall_time:
            left = wall_time - (utcnow() - study.created_at).total_seconds()
            line += f", {max(0.0, left):.0f}s of max_wall_time left"
        return line

    def __call__(self) -> None:
        lines = {study.name: self._line(study) for study in self.studies()}
        if self.live is not None:
            elapsed = time.monotonic() - self.started
            text = "\n".join(f"[bold]{name}[/] {line}" for name, line in lines.items()) or "no running study"
            self.live.update(f"{text}\n[dim]{elapsed:.0f}s[/]")
        else:
            for name, line in lines.items():
                if self.last.get(name) != line:
                    out.print(f"[{time.monotonic() - self.started:6.1f}s] {name}: {line}", highlight=False)
        self.last = lines

    def __enter__(self) -> _Progress:
        if out.is_terminal:
            self.live = Live(console=out, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


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
    }


def pareto_trials(store: Store, study: Study) -> list[Trial]:
    """Completed trials no other completed trial beats in every objective."""
    from hpsearch.objectives import pareto_front

    directions = [o["direction"] for o in study.objectives or []]
    scored = [
        (t, t.objective_values)
        for t in store.trials(study.id)
        if t.state == "COMPLETED" and t.objective_values and None not in t.objective_values
    ]
    return pareto_front(scored, directions)


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


def _print_best(store: Store, study: Study, *, as_json: bool) -> None:
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
    _print_best(store, store.study(study), as_json=as_json)


@app.command()
def status(
    study: Annotated[str | None, typer.Argument()] = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Every study (or one): state, trial counts and the best objective."""
    store = open_store(db)
    studies = [store.study(study)] if study else store.studies()
    rows = []
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
            row["state"],
            row["algorithm"],
            f"{done}/{row['max_trials']}",
            str(counts["RUNNING"]),
            str(counts["QUEUED"]),
            str(counts["FAILED"]),
            best_text,
        )
    out.print(table)


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
    rows = [_trial_dict(t) for t in store.trials(item.id, sort=sort, limit=limit, direction=item.direction)]
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("#", "state", item.objective_name, "best epoch", "epochs", "params", "error")
    for row in rows:
        objective = f"{row['objective']:.4f}" if row["objective"] is not None else "-"
        table.add_row(
            str(row["number"]),
            row["state"],
            objective,
            str(row["best_epoch"] or "-"),
            str(row["epochs_done"]),
            _format_params(row["params"]),
            row["error"] or "",
        )
    out.print(table)


@app.command()
def show(study: str, number: TrialNumber, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One trial: params, state, objective, attempts and its learning curve."""
    store = open_store(db)
    item = store.study(study)
    trial = store.trial(item.id, number)
    curve = store.metrics(trial.id)
    attempts = [
        {
            "attempt": a.attempt,
            "start_epoch": a.start_epoch,
            "last_checkpoint_epoch": a.last_checkpoint_epoch,
            "outcome": a.outcome,
        }
        for a in store.attempts(trial.id)
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
    names = sorted({name for values in curve.values() for name in values})
    table = Table("epoch", *names, title="learning curve")
    for epoch, values in curve.items():
        table.add_row(str(epoch), *(f"{values[n]:.4f}" if values.get(n) is not None else "-" for n in names))
    out.print(table)


@app.command()
def promote(
    study: str,
    db: DbOption = None,
    trial: Annotated[int | None, typer.Option("--trial", help="Trial number (default: the best).")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Most epochs (default: [promote] epochs, else max_epochs).")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience on the validation split.")] = None,
    on: Annotated[str | None, typer.Option("--on", help="train | train+validation (default: [promote] on).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run the job in this process, not on a worker.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Retrain the best (or a chosen) trial into the final model: early stopping, checkpoints, resume,
    test evaluation (per class, per slice and threshold) and export. Running it again resumes the job."""
    from hpsearch.control.promotion import plan_final_job, run_local

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
        if job.epochs_done:
            out.print(f"final job {job.number}: resuming after epoch {job.epochs_done}", highlight=False)
        job = run_local(store, job)
    _print_final_job(store, item, job.id, as_json=as_json)
    if job.state != "COMPLETED":
        last = (job.error or "").strip().splitlines()
        raise HpsearchError(f"final job {job.number}", f"{job.state}: {last[-1] if last else 'no result'}")


def _print_final_job(store: Store, study: Study, job_id: int, *, as_json: bool) -> None:
    job = store.final_job(job_id)
    artifacts = store.final_artifacts(job.id)
    classes, slices = store.final_evaluation(job.id)
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
                    {"class": c.class_label, "precision": c.precision, "recall": c.recall, "f1": c.f1} for c in classes
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
    rows = []
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
    from hpsearch.analysis.report import render_report

    store = open_store(db)
    store.study(study)  # an unknown study is a usage error before any work
    page = render_report(store, study)
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {output}", f"cannot write: {exc.strerror or exc}") from None
    out.print(f"wrote {output}", highlight=False)


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one line per error, exit 2 for bad input, tracebacks only with --debug."""
    if "--debug" not in sys.argv[1:]:
        # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) would bury the one error line.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Batch schedulers and Kubernetes stop with SIGTERM: clean up as on Ctrl-C (trials go back to the queue).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = app(standalone_mode=False, prog_name="hpsearch")
        if isinstance(code, int) and code:
            sys.exit(code)  # typer returns 130 after an interrupt instead of raising
    except HpsearchError as exc:
        _fail(exc.where, exc.what, exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # Click's exceptions, matched by name: typer may bring its own vendored copy of click.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "Exit" in kinds:
            sys.exit(getattr(exc, "exit_code", 0))
        if "Abort" in kinds:
            sys.exit(1)
        if "ClickException" in kinds:  # a missing argument, a bad option value, an unknown command
            context = getattr(exc, "ctx", None)
            where = context.command_path if context is not None else "hpsearch"
            _fail(where, " ".join(exc.format_message().split()), exc.exit_code)  # type: ignore[attr-defined]
        hint = "" if _debug else " (run with --debug for the traceback)"
        _fail("internal", f"{type(exc).__name__}: {exc}{hint}", 1)


def _fail(where: str, what: str, code: int) -> None:
    """Print the one-line error (after the traceback with --debug) and exit with ``code``."""
    # argv too: an unknown command fails before the option callback has set _debug.
    if _debug or "--debug" in sys.argv[1:2]:
        import traceback

        traceback.print_exc()
    text = " ".join(f"error: {where}: {what}".split("\n"))
    err.print(text, highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)
