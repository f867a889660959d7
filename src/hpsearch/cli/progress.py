"""A live view of running studies on a terminal; one line per change elsewhere (CI logs)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.live import Live

from hpsearch.cli.app import out
from hpsearch.store import Store
from hpsearch.store.models import utcnow
from hpsearch.store.records import StudyRecord as Study


class Progress:
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

    def __enter__(self) -> Progress:
        if out.is_terminal:
            self.live = Live(console=out, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
