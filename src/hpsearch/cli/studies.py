"""Commands that create, run and change studies, and start coordinators and workers."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from hpsearch.api import RETRY_SECONDS, Study, create_study, load_study
from hpsearch.cli.app import ArtifactsOption, DbOption, app, db_app, err, out, study_app
from hpsearch.cli.progress import Progress
from hpsearch.cli.results import print_best
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.paths import artifact_path
from hpsearch.store import StudyState, TrialState, mask_url, open_store, resolve_url
from hpsearch.store.models import utcnow

# --- studies ---------------------------------------------------------------------------------------------


@study_app.command("create")
def study_create(
    study_file: Path, db: DbOption = None, artifacts: ArtifactsOption = Path("hpsearch-artifacts")
) -> None:
    """Validate a study file, discover its search space and store the study."""
    url = resolve_url(db)
    new_database = _is_new_database(url)
    study = create_study(study_file, db=url, artifacts=artifacts)
    _say_if_created(url, new_database)
    verb = "created" if study.created else "already exists:"
    parameters = len(study.record.space["space"])
    out.print(f"study {study.name} {verb} in {mask_url(url)} ({parameters} parameters)", highlight=False)
    _say_auto(study)


def _say_auto(study: Study) -> None:
    """The pick of ``algorithm = "auto"`` and why, one line (nothing for other studies)."""
    choice = study.record.algorithm_choice
    if choice:
        out.print(f"algorithm {choice['reason']}", highlight=False, markup=False)


def _is_new_database(url: str) -> bool:
    """Whether creating a study here would create the database (an SQLite file, or PostgreSQL's tables)."""
    from hpsearch.store.db import make_engine, schema_revision
    from hpsearch.store.urls import sqlite_file

    path = sqlite_file(url)
    if path is not None:
        return not path.exists() or path.stat().st_size == 0
    if url.startswith("sqlite"):
        return False  # in memory or a URI: nothing the user would look for
    engine = make_engine(url)
    try:
        return schema_revision(engine) is None
    finally:
        engine.dispose()


def _say_if_created(url: str, new_database: bool) -> None:
    # One line, so that a run from another directory (a second, empty hpsearch.db) or a mistyped --db is seen.
    if not new_database:
        return
    from hpsearch.store.urls import sqlite_file

    path = sqlite_file(url)
    what = f"new database {path}" if path is not None else f"hpsearch tables in {mask_url(url)}"
    out.print(f"created {what}", highlight=False)


def _set_state(name: str, db: str | None, state: StudyState) -> None:
    study = load_study(name, db=db)
    message = f"{state.value.lower()} by `hpsearch study` at {utcnow():%Y-%m-%d %H:%M:%S} UTC"
    was = study.record
    forgiven = 0
    if state == StudyState.STOPPED:
        study.stop(message)
    else:
        forgiven = study.resume(message)
    out.print(f"study {name}: {state.value}", highlight=False)
    if forgiven:
        out.print(_streak_reset(was.message, forgiven), highlight=False)


def _streak_reset(reason: str | None, forgiven: int) -> str:
    """The one line saying that resuming a FAILED study forgave its last failures (issue 24)."""
    return f"it had FAILED ({reason or 'no reason recorded'}); its {forgiven} consecutive failures no longer count"


@study_app.command("stop")
def study_stop(study: str, db: DbOption = None) -> None:
    """Stop a study: no new trials start; running ones are asked to stop."""
    _set_state(study, db, StudyState.STOPPED)


@study_app.command("resume")
def study_resume(study: str, db: DbOption = None) -> None:
    """Resume a stopped study."""
    _set_state(study, db, StudyState.RUNNING)


@study_app.command("delete")
def study_delete(
    study: str,
    db: DbOption = None,
    artifacts: Annotated[
        bool, typer.Option("--artifacts", help="Also delete its checkpoints and models under the artifact root.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a study: every trial, metric, checkpoint record and final job (with --artifacts, its files too)."""
    handle = load_study(study, db=db)
    record = handle.record
    what = f"study {study} ({sum(handle.counts().values())} trials, {record.state})"
    if artifacts:
        what += f" and its files under {artifact_path(record.artifact_root, record.name)}"
    if not yes and not typer.confirm(f"delete {what}?", default=False):
        out.print("nothing deleted")
        raise typer.Exit(1)
    handle.delete(artifacts=artifacts)
    out.print(f"deleted {what}", highlight=False)


@study_app.command("rename")
def study_rename(study: str, new_name: str, db: DbOption = None) -> None:
    """Rename a study that has nothing running; its files move along and stay reachable. Edit the study
    file's name to match before running it again."""
    handle = load_study(study, db=db)
    handle.rename(new_name)
    out.print(f"study {study} renamed to {new_name}", highlight=False)


@study_app.command("extend")
def study_extend(
    study: str,
    db: DbOption = None,
    max_trials: Annotated[int | None, typer.Option("--max-trials", min=1, help="The new total of trials.")] = None,
    max_wall_time: Annotated[
        str | None, typer.Option("--max-wall-time", help="The new wall-time budget: seconds or '90s', '10m', '2h'.")
    ] = None,
) -> None:
    """Grow a study's budget (new totals); a completed study can then be continued with `hpsearch run`."""
    seconds = None if max_wall_time is None else _duration("--max-wall-time", max_wall_time)
    handle = load_study(study, db=db)
    handle.extend(max_trials=max_trials, max_wall_time=seconds)
    record = handle.record
    wall = record.spec["search"].get("max_wall_time")
    budget = f"max_trials {record.max_trials}" + (f", max_wall_time {wall:g}s" if wall else "")
    out.print(f"study {study}: {budget}; {record.state}", highlight=False)


def _duration(option: str, text: str) -> float:
    from hpsearch.spec import parse_duration

    try:
        seconds = float(parse_duration(text))
    except (TypeError, ValueError):
        raise UsageError(option, f"must be seconds or a duration such as '90s', '10m' (got {text!r})") from None
    if seconds <= 0:
        raise UsageError(option, f"must be positive (got {text!r})")
    return seconds


@app.command()
def gc(
    study: str,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; delete nothing.")] = False,
) -> None:
    """Free checkpoints no resume or promotion needs any more (the best trial's is kept)."""
    from hpsearch.control.retention import collect

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
    try:
        with Progress(store, loop.running_studies, time.monotonic()) as progress:
            loop.run(until_done=exit_when_done, on_tick=progress)
    except KeyboardInterrupt:
        err.print("coordinator stopped (interrupted); its studies wait for a coordinator: `hpsearch coordinator`")
        raise typer.Exit(130) from None


@app.command()
def worker(
    db: DbOption = None,
    gpu: Annotated[
        str | None,
        typer.Option(help="GPU index for this worker's trials (CUDA_VISIBLE_DEVICES), or 'all': one worker per GPU."),
    ] = None,
    slots: Annotated[int, typer.Option(min=1, max=256, help="Trials at once, each in its own process.")] = 1,
    study: Annotated[str | None, typer.Option(help="Only run trials of this study.")] = None,
    max_trials: Annotated[int | None, typer.Option(min=1, help="Exit after this many trials.")] = None,
    idle_timeout: Annotated[float | None, typer.Option(min=0, help="Exit after this many idle seconds.")] = None,
    exit_when_done: Annotated[bool, typer.Option(help="Exit when --study is no longer running.")] = False,
) -> None:
    """Pull trials from the database and train them, one child process per trial (--slots K: K at once)."""
    from hpsearch.execution.slots import run_worker

    logging.getLogger("hpsearch").setLevel(logging.INFO)
    from hpsearch.execution.orphans import watch_parent

    watch_parent()  # started by `hpsearch run`: stop (cleanly) when it dies, even by SIGKILL
    try:
        run_worker(
            lambda: open_store(db, retry_seconds=RETRY_SECONDS),
            resolve_url(db),
            slots=slots,
            gpu=gpu,
            study=study,
            max_trials=max_trials,
            idle_timeout=idle_timeout,
            exit_when_done=exit_when_done,
        )
    except KeyboardInterrupt:
        err.print("worker stopped (interrupted); its trials went back to the queue")
        raise typer.Exit(130) from None


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
    url = resolve_url(db)
    new_database = _is_new_database(url)
    study = create_study(study_file, db=url, artifacts=artifacts)
    _say_if_created(url, new_database)
    count = workers or study.record.spec["run"]["workers"]
    if study.state == StudyState.COMPLETED:
        done = study.counts()
        out.print(
            f"study {study.name} is already completed ({done['COMPLETED']} trials completed, "
            f"{done['FAILED']} failed); `hpsearch study extend {study.name} --max-trials N` grows it",
            highlight=False,
        )
        print_best(study.store, study.record, as_json=False)
        return
    verb = "created" if study.created else "resumed"
    if study.state == StudyState.FAILED:
        reason = study.record.message
        out.print(_streak_reset(reason, study.resume()), highlight=False)
    out.print(f"study {study.name} {verb}: {count} workers, {mask_url(url)}")
    _say_auto(study)
    logging.getLogger("hpsearch").setLevel(logging.WARNING)
    try:
        with Progress(study.store, lambda: [study.record], time.monotonic()) as progress:
            study.run(count, on_tick=progress)
    except KeyboardInterrupt:
        err.print(
            f"interrupted: running trials went back to the queue; `hpsearch run {study_file}` resumes", highlight=False
        )
        raise typer.Exit(130) from None
    except HpsearchError:
        print_failures(study)
        raise
    print_failures(study)
    print_best(study.store, study.record, as_json=False)
    if not study.counts()["COMPLETED"]:
        raise HpsearchError(f"study {study.name}", f"no trial completed (see `hpsearch trials {study.name}`)")


def print_failures(study: Study, most: int = 3) -> None:
    """The most common reasons trials failed, one line each with how many trials it ended."""
    reasons = Counter(t.error.strip().splitlines()[0] for t in study.trials if t.state == TrialState.FAILED and t.error)
    for reason, count in reasons.most_common(most):
        out.print(f"failed: {count} trial{'s' if count > 1 else ''}: {reason}", highlight=False, markup=False)


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

    seconds = _duration("--time-limit", time_limit)
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
