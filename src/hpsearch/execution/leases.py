"""Keep a claimed job's lease alive from the claim on, while the worker is not yet following a child.

Why: between the claim and the child's start a worker imports the user's module and loads the study's data,
which may take longer than the lease (an 8 s loader and a 3 s lease used to fail the trial "lease expired").
A thread renews the lease every ``heartbeat_seconds`` until the supervision loop takes over; the loading
itself stays on the worker's thread (user code, signals and KeyboardInterrupt behave as before).

Example::

    with LeaseKeeper(lambda: store.heartbeat(trial_id, worker_id, 60, attempt=attempt), 5.0) as keeper:
        data = load_the_data()
    if keeper.answer == "lost":
        ...  # another attempt holds the trial now: do not start it
    first_beat_at = keeper.next_beat_at  # the supervision loop renews from here
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from hpsearch.execution.supervisor import Beat

log = logging.getLogger("hpsearch.execution.leases")


class LeaseKeeper:
    """Calls ``beat`` every ``heartbeat_seconds`` on a daemon thread while the ``with`` block runs (the claim
    itself set the lease, so the first renewal is one interval after entry). ``answer`` is the latest answer;
    after a ``lost`` it stops renewing. A renewal that raises (the database away past its retries) is logged
    and tried again at the next interval: the supervision loop reports a lasting failure."""

    def __init__(self, beat: Callable[[], Beat], heartbeat_seconds: float) -> None:
        self.beat = beat
        self.heartbeat_seconds = heartbeat_seconds
        self.answer: Beat = "continue"
        self.beats = 0
        self.next_beat_at = time.monotonic() + heartbeat_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpsearch-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self.next_beat_at = time.monotonic() + self.heartbeat_seconds
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self.next_beat_at - time.monotonic())):
            self.next_beat_at = time.monotonic() + self.heartbeat_seconds
            try:
                answer = self.beat()
            except Exception as exc:  # a failed renewal must not end the thread
                log.warning("renewing the lease while loading failed: %s", exc)
                continue
            self.answer, self.beats = answer, self.beats + 1
            if answer == "lost":
                return
