"""Parameter importance for live pages, computed off the request path.

fANOVA (the report's :func:`~hpsearch.analysis.report.importance.parameter_importances`) takes seconds: about
1 s for 100 completed trials and 4 s for 300 on one core. A page cannot wait for it, so the dashboard shows
the newest result it has and computes a new one in a background thread when the completed trials changed,
at most once per ``min_interval`` seconds per study, over at most ``max_rows`` completed trials (a seeded
random sample beyond that, said in the note). :meth:`Importances.stamp` changes when a result lands, and
is part of the study page's ETag, so polling browsers pick it up.

Example::

    >>> importances = Importances()
    >>> value, note = importances.get(load_report_data(store, "mnist_mlp"))  # at first: None, "Computing ..."
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from hpsearch.analysis.report.data import ReportData
from hpsearch.analysis.report.importance import parameter_importances

log = logging.getLogger("hpsearch.dashboard")
Result = tuple[dict[str, float] | None, str]


@dataclass(frozen=True)
class _Done:
    completed: int
    at: float
    value: Result
    stamp: int


class Importances:
    """The newest parameter importances of each study, refreshed in one background thread.

    Example: ``Importances(max_rows=300, min_interval=30.0).get(data)``."""

    def __init__(self, max_rows: int = 300, min_interval: float = 30.0) -> None:
        self.max_rows = max_rows
        self.min_interval = min_interval
        self._done: dict[str, _Done] = {}
        self._latest: dict[str, ReportData] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpsearch-importance")
        self._stamps = 0

    def get(self, data: ReportData) -> Result:
        """The newest importances of ``data.study`` (a note says when there are none yet); starts a new
        computation on ``data`` when it is due."""
        name = data.study.name
        with self._lock:
            self._latest[name] = data
            self._start_if_due(name)
            done = self._done.get(name)
        if done is None:
            return None, "Computing parameter importance (fANOVA) in the background; it appears here when done."
        return done.value

    def stamp(self, name: str) -> int:
        """A number that changes when a new result for study ``name`` lands (0: none yet); also starts a
        computation that became due since (the study stopped changing after the last one started)."""
        with self._lock:
            self._start_if_due(name)
            done = self._done.get(name)
            return done.stamp if done is not None else 0

    def wait(self, timeout: float = 60.0) -> None:
        """Block until no computation is pending (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return
            time.sleep(0.05)

    def _start_if_due(self, name: str) -> None:
        data = self._latest.get(name)
        if data is None or name in self._pending:
            return
        done = self._done.get(name)
        completed = len(data.completed)
        if done is not None and (done.completed == completed or time.monotonic() - done.at < self.min_interval):
            return
        self._pending.add(name)
        self._pool.submit(self._compute, name, data, completed)

    def _compute(self, name: str, data: ReportData, completed: int) -> None:
        try:
            value = self.compute(data)
        except Exception as exc:  # a failure shows as a note, never as a broken page
            log.warning("dashboard: importance of %s failed: %s", name, exc)
            value = None, f"Parameter importance could not be computed: {type(exc).__name__}"
        with self._lock:
            self._stamps += 1
            self._done[name] = _Done(completed, time.monotonic(), value, self._stamps)
            self._pending.discard(name)

    def compute(self, data: ReportData) -> Result:
        """Importances over at most ``max_rows`` completed trials (seeded sample), with a note saying so.
        Example: ``Importances(max_rows=100).compute(data)``."""
        completed = data.completed
        if len(completed) <= self.max_rows:
            return parameter_importances(data)
        chosen = {t.id for t in random.Random(0).sample(completed, self.max_rows)}
        sample = replace(data, trials=[t for t in data.trials if t.id in chosen])
        value, note = parameter_importances(sample)
        return value, f"Over a random sample of {self.max_rows} of {len(completed)} completed trials. {note}".strip()
