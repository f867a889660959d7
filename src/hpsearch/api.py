"""The Python API: create or load a study, run it with local workers, read its results, promote the best.

Everything the ``hpsearch`` command does is a call here (the CLI parses, calls and prints), and the Keras
Tuner layer (:mod:`hpsearch.keras_tuner`) is built on it too.

>>> import hpsearch
>>> study = hpsearch.create_study("studies/mnist_mlp.toml", db="sqlite:///hpsearch.db")  # doctest: +SKIP
>>> study.run(workers=2)  # doctest: +SKIP
>>> study.best_trial.params  # doctest: +SKIP
{'units': 128, 'dropout': 0.1, 'lr': 0.003}
>>> job = study.promote()  # doctest: +SKIP

A study is data in the database; a :class:`Study` object is a handle on it (name and store), so every
property reads the database afresh and two handles on the same study, in two processes, agree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, UsageError
from hpsearch.paths import artifact_path, ensure_writable_root, remove_study_files
from hpsearch.references import reference
from hpsearch.spec import StudySpec, load_spec, validate_spec
from hpsearch.store import Store, StudyState, TrialState, open_store

if TYPE_CHECKING:
    import pandas as pd

    from hpsearch.execution.orphans import ParentLink
    from hpsearch.store.records import FinalJobRecord as FinalJob
    from hpsearch.store.records import StudyRecord as StudyRow
    from hpsearch.store.records import TrialRecord as Trial

DEFAULT_ARTIFACT_ROOT = "hpsearch-artifacts"
# Workers and coordinators ride out a database restart this long (reconnecting with backoff).
RETRY_SECONDS = 600.0


def create_study(
    spec: StudySpec | Mapping[str, Any] | str | Path,
    *,
    db: str | None = None,
    artifacts: str | Path | None = None,
    hypermodel: Callable[..., Any] | str | None = None,
    data: Callable[..., Any] | str | None = None,
    store: Store | None = None,
) -> Study:
    """Create a study, or return the existing one of the same name and spec (a changed spec is refused).

    ``spec`` is a study file's path, a :class:`~hpsearch.spec.StudySpec`, or a dict of the same tables.
    ``hypermodel`` and ``data`` override the spec's references and may be functions: a function of an
    importable module is stored as ``module:function``; one defined in the running script as
    ``/path/to/script.py:function``, which workers import without running the script's
    ``if __name__ == "__main__":`` block (write your script that way, as for ``multiprocessing``).

    >>> def load_data(): ...  # doctest: +SKIP
    >>> def build_model(hp): ...  # doctest: +SKIP
    >>> study = create_study(  # doctest: +SKIP
    ...     {"study": {"name": "demo", "objective": "val_accuracy"}, "search": {"max_trials": 4, "max_epochs": 2}},
    ...     hypermodel=build_model, data=load_data)
    """
    from hpsearch.control.studies import insert_study, study_row
    from hpsearch.execution.discovery import discover

    path, parsed = _spec_of(spec, hypermodel, data)
    store = store or open_store(db, create=True)
    found = discover(parsed, path)
    root = artifacts or os.environ.get("HPSEARCH_ARTIFACTS", DEFAULT_ARTIFACT_ROOT)
    row = study_row(found.spec, path, found.space, root)
    record, created = insert_study(store, row)
    return Study(store, record.name, created=created)


def load_study(name: str, *, db: str | None = None, store: Store | None = None) -> Study:
    """A handle on a stored study; an unknown name is a :class:`~hpsearch.errors.UsageError`.

    >>> study = load_study("mnist_mlp", db="sqlite:///hpsearch.db")  # doctest: +SKIP
    >>> study.state  # doctest: +SKIP
    'COMPLETED'
    """
    store = store or open_store(db)
    return Study(store, store.study(name).name)


class Study:
    """A stored study: run it, read its trials and best results, promote, report, export, stop, resume.

    >>> study = load_study("mnist_mlp")  # doctest: +SKIP
    >>> [t.number for t in study.trials if t.state == "COMPLETED"][:3]  # doctest: +SKIP
    [0, 1, 2]
    """

    def __init__(self, store: Store, name: str, *, created: bool = False) -> None:
        self.store = store
        self.name = name
        #: Whether :func:`create_study` inserted it (False: it existed with the same spec).
        self.created = created

    def __repr__(self) -> str:
        return f"Study({self.name!r}, state={self.state!r})"

    # --- the stored facts ----------------------------------------------------------------------------------

    @property
    def record(self) -> StudyRow:
        """The study's row as stored now."""
        return self.store.study(self.name)

    @property
    def state(self) -> str:
        """RUNNING, STOPPED, COMPLETED or FAILED."""
        return str(self.record.state)

    @property
    def algorithm_reason(self) -> str | None:
        """For ``algorithm = "auto"``: what it picked when the study was created and why, e.g. ``"auto -> bohb:
        1 worker, budget one Hyperband sweep: 375 epochs, ..."`` (None for a study that named its algorithm)."""
        choice = self.record.algorithm_choice
        return str(choice["reason"]) if choice else None

    @property
    def trials(self) -> list[Trial]:
        """Every trial, by number."""
        return self.store.trials(self.record.id)

    @property
    def best_trial(self) -> Trial | None:
        """The completed trial with the best objective (the first objective of a multi-objective study)."""
        return self.store.best_trial(self.record)

    @property
    def pareto_front(self) -> list[Trial]:
        """Completed trials that no other completed trial beats in every objective."""
        from hpsearch.analysis.pareto import pareto_trials

        return pareto_trials(self.store, self.record)

    def trial(self, number: int) -> Trial:
        """One trial by its number."""
        return self.store.trial(self.record.id, number)

    def curve(self, number: int) -> dict[int, dict[str, float | None]]:
        """A trial's learning curve: ``{epoch: {metric: value}}``."""
        return self.store.metrics(self.trial(number).id)

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial, each parameter in a ``param_<name>`` column (as Optuna's)."""
        from hpsearch.analysis.export import trials_frame

        return trials_frame(self.store, self.record)

    def counts(self) -> dict[str, int]:
        """How many trials are in each state."""
        return self.store.counts(self.record.id)

    # --- running ---------------------------------------------------------------------------------------------

    def run(self, workers: int | None = None, *, on_tick: Callable[[], None] | None = None) -> None:
        """Run the study here until it is done: this process coordinates, ``workers`` local worker processes
        (default: the spec's ``run.workers``) train. Returns when no trial is left; raises
        :class:`~hpsearch.errors.HpsearchError` if the study FAILED (its message says why)."""
        from hpsearch.control.coordinator import Coordinator

        study = self.record
        ensure_writable_root(study.artifact_root)  # a resumed study's root may have gone read-only or full
        log_dir = artifact_path(study.artifact_root, study.name, "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        if study.state != StudyState.RUNNING:
            self.store.resume_study(study.id)  # a FAILED study: its failure streak is reset (see resume)
        # workers=0: this process only coordinates; `hpsearch worker` processes elsewhere train.
        count = study.spec["run"]["workers"] if workers is None else workers
        from hpsearch.execution.orphans import ParentLink

        # The workers stop by themselves when this process dies, even by SIGKILL (see execution.orphans).
        link = ParentLink()
        url = self.store.engine.url.render_as_string(hide_password=False)
        # A study that requires a Keras backend gets local workers of that backend (others would not claim it).
        backend = study.spec["run"].get("backend")
        procs = _start_workers(url, study.name, count, log_dir, link, backend=backend)
        link.children_started()

        def tick() -> None:
            if on_tick is not None:
                on_tick()
            if procs and all(p.poll() is not None for p in procs) and self.state == StudyState.RUNNING:
                raise HpsearchError(f"study {study.name}", f"all workers exited; see {log_dir}")

        try:
            Coordinator(self.store, [study.name]).run(until_done=True, on_tick=tick)
            for proc in procs:
                proc.wait(timeout=120)
        except KeyboardInterrupt:
            # Ctrl-C, SIGTERM: each worker hands its trial back to the queue (no retry charged) and deregisters.
            _stop_workers(procs)
            raise
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            link.close()
        final = self.record
        if final.state == StudyState.FAILED:
            raise HpsearchError(f"study {study.name}", final.message or "failed")

    def stop(self, message: str | None = None) -> None:
        """No new trials start; running ones are asked to stop. A STOPPED study stays as it is; a COMPLETED
        or FAILED one is refused, as nothing runs (the state table in docs/schema.md)."""
        record = self.record
        _refuse_finished(record, "stop")
        if record.state == StudyState.RUNNING:
            self.store.set_study_state(record.id, StudyState.STOPPED, message)

    def resume(self, message: str | None = None) -> int:
        """Let a stopped (or FAILED) study run again (a coordinator picks it up). A FAILED study's streak of
        consecutive failures is reset, so that it runs again once the cause is fixed; returns how many failures
        that forgave (0 for a study that was not FAILED). A RUNNING study stays as it is; a COMPLETED one is
        refused: `extend` grows its budget first (docs/schema.md, the state table)."""
        record = self.record
        _refuse_finished(record, "resume")
        if record.state == StudyState.RUNNING:
            return 0
        return self.store.resume_study(record.id, message)

    def extend(self, *, max_trials: int | None = None, max_wall_time: float | None = None) -> None:
        """Raise the study's budget to these totals (trials; seconds of wall time since its creation). A
        COMPLETED study becomes STOPPED, and :meth:`run` continues it.

        >>> load_study("mnist_mlp").extend(max_trials=40)  # doctest: +SKIP
        """
        if max_trials is None and max_wall_time is None:
            raise UsageError(f"study {self.name}", "extend needs max_trials or max_wall_time")
        self.store.extend_study(self.record.id, max_trials=max_trials, max_wall_time=max_wall_time)

    def delete(self, *, artifacts: bool = False) -> None:
        """Delete the study from the database (every trial, metric, checkpoint row and final job); with
        ``artifacts=True`` also its directory under the artifact root. A running study's workers see it gone
        and move on."""
        record = self.record
        self.store.delete_study(record.id)
        if artifacts:
            remove_study_files(record.artifact_root, record.name)

    def rename(self, new_name: str) -> None:
        """Rename the study (no trial or final job may be running). Its files move from ``<root>/<old>`` to
        ``<root>/<new>`` and the stored artifact paths follow, so checkpoints and models stay reachable; this
        handle follows the new name.

        >>> load_study("mnist").rename("mnist-v1")  # doctest: +SKIP
        """
        from hpsearch.spec import _STUDY_NAME

        if not _STUDY_NAME.match(new_name):
            raise UsageError(
                f"study name {new_name!r}",
                "must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit",
            )
        record = self.record
        if new_name == record.name:
            raise UsageError(f"study {new_name}", "already has that name")
        old_dir = artifact_path(record.artifact_root, record.name)
        new_dir = artifact_path(record.artifact_root, new_name)
        move = old_dir.exists()
        if move and new_dir.exists():
            raise UsageError(str(new_dir), "already exists; move it away or choose another name")
        # The directory moves first (one rename(2), atomic) and moves back if the database refuses, so the rows
        # never name files that are not there.
        if move:
            old_dir.rename(new_dir)
        try:
            self.store.rename_study(record.id, new_name, str(old_dir), str(new_dir))
        except BaseException:
            if move:
                new_dir.rename(old_dir)
            raise
        self.name = new_name

    # --- results ---------------------------------------------------------------------------------------------

    def promote(
        self,
        trial: int | None = None,
        *,
        epochs: int | None = None,
        patience: int | None = None,
        on: str | None = None,
        local: bool = True,
    ) -> FinalJob:
        """Retrain the best (or the numbered) trial into the final model: early stopping, checkpoints, test
        evaluation and export. With ``local=True`` the job runs in a worker of this process and the finished
        job is returned; otherwise it is queued for any worker. Calling it again resumes the same job."""
        from hpsearch.control.promotion import plan_final_job

        study = self.record
        job, _ = self.store.create_final_job(
            plan_final_job(self.store, study, trial_number=trial, epochs=epochs, patience=patience, on=on)
        )
        if local and job.state != TrialState.COMPLETED:
            job = run_final_job_here(self.store, job)
        return job

    def report(self, path: str | Path) -> Path:
        """Write the study's self-contained HTML report to ``path``."""
        from hpsearch.analysis.report import render_report

        path = Path(path)
        page = render_report(self.store, self.name)
        try:
            path.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"report {path}", f"cannot write: {exc.strerror or exc}") from None
        return path

    def export(self, path: str | Path | None = None, *, fmt: str = "csv", metrics: bool = False) -> str | None:
        """Trials (or with ``metrics=True`` the learning curves) as csv, parquet or json: written to ``path``,
        or returned as text when ``path`` is None."""
        from hpsearch.analysis.export import metrics_frame, trials_frame, write_frame

        study = self.record
        frame = metrics_frame(self.store, study) if metrics else trials_frame(self.store, study)
        return write_frame(frame, fmt, Path(path) if path is not None else None)


def _refuse_finished(record: StudyRow, command: str) -> None:
    """``study stop`` and ``study resume`` of a study where nothing runs or can run: one line saying what to
    do instead. (A study the coordinator completes between this read and the write is harmless: a resumed
    study with nothing left to try is completed again at the coordinator's next tick.)"""
    grow = f"`hpsearch study extend {record.name} --max-trials N` grows its budget, then `hpsearch run` continues it"
    if record.state == StudyState.COMPLETED:
        raise UsageError(f"study {record.name}", f"is COMPLETED, nothing to {command}; {grow}")
    if record.state == StudyState.FAILED and command == "stop":
        raise UsageError(
            f"study {record.name}",
            "is FAILED, nothing runs to stop; `hpsearch study resume` or `hpsearch run` retries it",
        )


def run_final_job_here(store: Store, job: FinalJob) -> FinalJob:
    """Run one final job in a worker of this process (a fork-server child, as on any worker). While another
    process of this host runs it (two ``promote --local`` at once), wait for its result; if that process
    dies, take the job over and resume it. A study with ``[run] backend`` runs in that Keras backend (this
    process's ``KERAS_BACKEND`` is set before its fork server starts), or is refused in one line when this
    process's fork server already runs another (see :func:`hpsearch.execution.backends.use_backend_here`)."""
    from hpsearch.control.promotion import running_in_another_process_here, take_over_if_abandoned
    from hpsearch.execution.backends import use_backend_here
    from hpsearch.execution.worker import Worker

    # A study that requires a Keras backend: this process's worker runs that one (as `hpsearch run` starts
    # workers of it), else no worker here could claim the job; when it cannot, one line says what to do.
    study = store.study_by_id(job.study_id)
    refused = use_backend_here(study.spec["run"].get("backend"))
    if refused is not None:
        raise UsageError(f"final job {job.number} of study {study.name}", refused)
    while True:
        take_over_if_abandoned(store, job)
        job = store.final_job(job.id)
        if job.state == TrialState.QUEUED:
            Worker(store, final_job=job.id, max_trials=1).run()
            job = store.final_job(job.id)
        if not running_in_another_process_here(store, job):
            return job
        time.sleep(1.0)  # its runner reports each epoch; a second is short next to one


def _stop_workers(procs: list[subprocess.Popen[bytes]], grace_seconds: float = 60.0) -> None:
    """Interrupt local workers (a terminal's Ctrl-C reached them already; a SIGINT or SIGTERM sent to this
    process alone did not) and wait for them to hand back their trials; kill any still alive past the grace."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_workers(
    url: str, study: str, count: int, log_dir: Path, link: ParentLink, backend: str | None = None
) -> list[subprocess.Popen[bytes]]:
    # The URL travels in the environment, not on the command line, where `ps` would show its password.
    env = {**os.environ, "HPSEARCH_DB": url, **link.child_env(), **({"KERAS_BACKEND": backend} if backend else {})}
    command = [sys.executable, "-m", "hpsearch", "worker", "--study", study, "--exit-when-done"]
    return [
        subprocess.Popen(
            command,
            env=env,
            stdout=(log_dir / f"worker-{i}.log").open("ab"),
            stderr=subprocess.STDOUT,
            pass_fds=link.pass_fds,
        )
        for i in range(count)
    ]


def _spec_of(
    spec: StudySpec | Mapping[str, Any] | str | Path,
    hypermodel: Callable[..., Any] | str | None,
    data: Callable[..., Any] | str | None,
) -> tuple[Path, StudySpec]:
    """The spec and the path its relative references resolve against (the file, else the working directory)."""
    if isinstance(spec, str | Path):
        path = Path(spec)
        parsed = load_spec(path)
    else:
        raw = spec.model_dump(mode="json") if isinstance(spec, StudySpec) else dict(spec)
        study = dict(raw.get("study", {}))
        # A spec built in Python has no file: its relative references resolve against the working directory.
        path = Path.cwd() / f"{study.get('name', 'study')}.toml"
        if hypermodel is not None:
            study["hypermodel"] = reference(hypermodel)
        if data is not None:
            study["data"] = reference(data)
        parsed = validate_spec({**raw, "study": study}, "<python>")
        return path, parsed
    if hypermodel is not None or data is not None:
        raw = parsed.model_dump(mode="json")
        raw["study"] |= {k: reference(v) for k, v in (("hypermodel", hypermodel), ("data", data)) if v is not None}
        parsed = validate_spec(raw, str(path))
    return path, parsed


def wait_for(study: Study, poll_seconds: float = 1.0, on_tick: Callable[[], None] | None = None) -> str:
    """Follow a study run by other processes until it is no longer RUNNING; returns its final state."""
    while (state := study.state) == StudyState.RUNNING:
        if on_tick is not None:
            on_tick()
        time.sleep(poll_seconds)
    return state
