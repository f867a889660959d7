"""A live view of running studies on a terminal; one line per change elsewhere (CI logs).

On a terminal each study shows its summary line, then one row per running trial (epoch, the objective's
last value, ETA, worker) and the reasons of its latest failures. Elsewhere the same facts are printed as
lines when they change: one per summary change, per trial epoch, per new failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpsearch.cli.app import out
from hpsearch.store import Store
from hpsearch.store.models import utcnow
from hpsearch.store.overview import LiveTrial
from hpsearch.store.records import StudyRecord as Study


def eta_seconds(started_at: datetime | None, done: int, total: int, now: datetime) -> float | None:
    """Seconds left at the pace so far (None before the first epoch). Example: ``eta_seconds(t0, 2, 10, t0 +
    20 s) == 80.0``."""
    if started_at is None or done <= 0:
        return None
    if done >= total:
        return 0.0
    return (now - started_at).total_seconds() / done * (total - done)


def format_seconds(seconds: float | None) -> str:
    """``-`` or a short duration: ``42s``, ``3m05s``, ``1h02m``."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """A live view of studies on a terminal; one line per change elsewhere (CI logs)."""

    def __init__(self, store: Store, studies: Callable[[], list[Study]], started: float) -> None:
        self.store, self.studies, self.started = store, studies, started
        self.live: Live | None = None
        self.last: dict[str, str] = {}
        self.logged: set[str] = set()  # the trial and failure lines already printed (log mode)

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

    def _trial_cells(self, study: Study, trial: LiveTrial) -> tuple[str, str, str, str, str]:
        # The epochs this attempt trained (a promoted or resumed trial starts past epoch 0) set the pace.
        eta = eta_seconds(
            trial.started_at,
            trial.epochs_done - trial.initial_epoch,
            trial.budget_epochs - trial.initial_epoch,
            utcnow(),
        )
        value = "-" if trial.last_objective is None else f"{trial.last_objective:.4f}"
        epoch = f"{trial.epochs_done}/{trial.budget_epochs}"
        return str(trial.number), epoch, f"{study.objective_name}={value}", format_seconds(eta), trial.worker or "-"

    def _view(self, study: Study, line: str) -> list[RenderableType]:
        parts: list[RenderableType] = [Text.assemble((study.name, "bold"), " ", line)]
        trials = self.store.live_trials(study.id, study.objective_name)
        if trials:
            table = Table("trial", "epoch", "last", "ETA", "worker", box=None, padding=(0, 2), pad_edge=True)
            for trial in trials:
                table.add_row(*self._trial_cells(study, trial))
            parts.append(table)
        for number, reason in self.store.recent_failures(study.id):
            parts.append(Text(f"  trial {number} failed: {reason}", style="red"))
        return parts

    def _log(self, study: Study, line: str) -> None:
        elapsed = f"[{time.monotonic() - self.started:6.1f}s]"
        if self.last.get(study.name) != line:
            out.print(f"{elapsed} {study.name}: {line}", highlight=False, markup=False)
        for trial in self.store.live_trials(study.id, study.objective_name):
            number, epoch, value, eta, worker = self._trial_cells(study, trial)
            key = f"{study.name} trial {number} epoch {epoch}"
            if trial.epochs_done > trial.initial_epoch and key not in self.logged:
                self.logged.add(key)
                out.print(
                    f"{elapsed} {study.name}: trial {number} epoch {epoch} {value} ETA {eta} on {worker}",
                    highlight=False,
                    markup=False,
                )
        for failed, reason in self.store.recent_failures(study.id):
            key = f"{study.name} trial {failed} failed"
            if key not in self.logged:
                self.logged.add(key)
                out.print(f"{elapsed} {study.name}: trial {failed} failed: {reason}", highlight=False, markup=False)

    def __call__(self) -> None:
        studies = self.studies()
        lines = {study.name: self._line(study) for study in studies}
        if self.live is not None:
            parts: list[RenderableType] = [p for study in studies for p in self._view(study, lines[study.name])]
            elapsed = time.monotonic() - self.started
            self.live.update(Group(*(parts or [Text("no running study")]), Text(f"{elapsed:.0f}s", style="dim")))
        else:
            for study in studies:
                self._log(study, lines[study.name])
        self.last = lines

    def __enter__(self) -> Progress:
        if out.is_terminal:
            self.live = Live(console=out, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


class FinalJobProgress:
    """`promote --local`: one line per epoch of the final job while it trains in this process (epoch, the
    metrics its early stopping watches, time left at most), from a thread that reads the database once a
    second. Why a thread reading the database: the job runs in a worker child as on any machine, and the
    database is where its epochs arrive; the worker's own code stays unaware of a terminal."""

    def __init__(
        self, store: Store, job_id: int, objective: str, poll_seconds: float = 1.0, console: Console = out
    ) -> None:
        self.store, self.job_id, self.objective, self.poll_seconds = store, job_id, objective, poll_seconds
        self.console = console  # stderr under --json: stdout carries the JSON document alone
        self.printed = 0
        self.first_seen: tuple[int, float] | None = None  # (epochs done, monotonic time) when watching began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="promote-progress", daemon=True)

    def lines(self) -> list[str]:
        """The lines of the epochs finished since the last call."""
        job = self.store.final_job(self.job_id)
        now = time.monotonic()
        if self.first_seen is None:
            self.first_seen = (job.epochs_done, now)
            self.printed = max(self.printed, job.epochs_done)  # epochs of an earlier attempt: not news
        curve = self.store.final_metrics(self.job_id)
        new = [epoch for epoch in sorted(curve) if epoch > self.printed]
        lines = []
        for epoch in new:
            values = curve[epoch]
            names = [n for n in (self.objective, f"val_{self.objective}", "loss", "val_loss") if n in values]
            shown = " ".join(
                f"{n}={values[n]:.4f}" for n in dict.fromkeys(names) if values[n] is not None
            )
            trained = epoch - self.first_seen[0]
            pace = (now - self.first_seen[1]) / trained if trained > 0 else None
            left = None if pace is None else pace * max(0, job.epochs - epoch)
            lines.append(
                f"final job {job.number}: epoch {epoch}/{job.epochs} {shown}".rstrip()
                + (f", at most {format_seconds(left)} left" if left is not None and epoch < job.epochs else "")
            )
            self.printed = epoch
        return lines

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                for line in self.lines():
                    self.console.print(line, highlight=False, markup=False)
            except Exception:
                continue

    def __enter__(self) -> FinalJobProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if exc[0] is None:
            for line in self.lines():  # the last epochs, written after the thread's last look
                self.console.print(line, highlight=False, markup=False)
