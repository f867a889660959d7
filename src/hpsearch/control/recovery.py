"""What a killed ``hpsearch run`` (SIGKILL, a power cut of the terminal, the OOM killer) left behind, repaired
by the next one on the same machine (issue 23): its workers' rows still IDLE or BUSY, their trials RUNNING
under a lease nobody renews.

Without this the trials came back only when their leases lapsed, charged a retry and with ``lease expired``
written into them, though nothing about the trials had failed. A worker of this host whose process no longer
exists cannot be running anything: its trials go back to the queue as after a clean stop (no retry charged,
no error; they resume from their checkpoints) and the worker is marked STOPPED.

A worker whose pid is alive is left alone, even if the pid was reused by another process: its lease still
expires as before, so being wrong costs a retry, never a trial taken from a live worker. Only this host's
workers are judged (another machine's pids mean nothing here).

Example::

    >>> repaired = repair_dead_workers(store)  # doctest: +SKIP
    >>> repaired.trials, repaired.workers  # doctest: +SKIP
    (2, 2)
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from hpsearch.store import Store

log = logging.getLogger("hpsearch.control.recovery")


@dataclass(frozen=True)
class Repaired:
    """How many trials went back to the queue and how many worker rows were marked STOPPED."""

    trials: int
    workers: int


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def repair_dead_workers(
    store: Store, host: str | None = None, alive: Callable[[int], bool] = pid_alive
) -> Repaired:
    """Release the trials of this host's dead workers (RUNNING -> QUEUED, uncharged) and mark them STOPPED."""
    host = host or socket.gethostname()
    trials = workers = 0
    for worker_id, pid, running in store.unstopped_workers(host):
        if pid == os.getpid() or alive(pid):
            continue
        for trial_id in running:
            store.release(trial_id, worker_id)  # fenced by the worker: a trial taken over meanwhile is left
            trials += 1
        store.worker_stopped(worker_id)
        workers += 1
    if workers:
        log.warning("%d workers of a killed run were gone: %d trials back in the queue", workers, trials)
    return Repaired(trials, workers)
