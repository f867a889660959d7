"""``hpsearch worker --slots K``: up to K trials at once in one worker process, each in its own child.

Small trials leave a GPU (or a many-core CPU) mostly idle; K trials side by side keep it busy. The group runs
K ordinary :class:`~hpsearch.execution.worker.Worker` loops in threads of one process, sharing its fork server
(keras is imported once), so claims, leases, heartbeats, checkpoints, retries and a crashed child are handled
exactly as for one worker: the same code runs per slot.

Design choices:

- **One ``workers`` row per slot** (the K rows share host and pid), not one row with a slot number: every
  queue write is fenced by the worker that owns the trial (``trials.worker_id``, its lease and attempt), so a
  row per slot keeps that ownership one trial per worker id, unchanged, and ``hpsearch status`` shows each
  slot busy or idle. Each slot has its own database connection pool.
- **Stop**: only the main thread receives SIGINT/SIGTERM. It sets one stop event shared by the slots; a slot
  that is training sees it within 0.2 s (the event is checked where its supervisor polls the child's pipe) and
  unwinds exactly as a single worker does on an interrupt: its child is killed, its trial handed back to the
  queue uncharged, its row marked STOPPED. An idle slot exits at its next poll.
- ``max_trials`` counts the group's trials, not each slot's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from hpsearch.errors import HpsearchError
from hpsearch.execution.gpu import no_gpu_error, run_per_gpu, share_gpu, visible_gpus
from hpsearch.execution.worker import Worker, WorkerOptions
from hpsearch.store import ClaimedTrial, Store
from hpsearch.store.records import FinalJobRecord

log = logging.getLogger("hpsearch.execution.slots")


class _Budget:
    """The group's ``max_trials``: each trial a slot starts takes one ticket."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left is None:
                return True
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    @property
    def spent(self) -> bool:
        with self.lock:
            return self.left is not None and self.left <= 0


class _StopAwareReceiver:
    """The parent's end of a child's pipe, which raises KeyboardInterrupt once the group is told to stop: the
    supervisor polls it every 0.2 s, so a slot thread unwinds as the main thread does on SIGINT."""

    def __init__(self, connection: Any, stop: threading.Event) -> None:
        self._connection = connection
        self._stop = stop

    def poll(self, timeout: float = 0.0) -> bool:
        if self._stop.is_set():
            raise KeyboardInterrupt
        return bool(self._connection.poll(timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _StopAwareContext:
    """A multiprocessing context whose pipes are :class:`_StopAwareReceiver` on the parent's side."""

    def __init__(self, context: Any, stop: threading.Event) -> None:
        self._context = context
        self._stop = stop

    def Pipe(self, duplex: bool = True) -> tuple[Any, Any]:
        receiver, sender = self._context.Pipe(duplex=duplex)
        return _StopAwareReceiver(receiver, self._stop), sender

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class SlotWorker(Worker):
    """One slot of a :class:`SlotGroup`: a Worker that stops when the group's ``stop`` event is set and takes
    a ticket of the group's budget for each trial."""

    def __init__(self, store: Store, options: WorkerOptions, *, stop: threading.Event, budget: _Budget) -> None:
        super().__init__(store, **vars(options))
        self.stop = stop
        self.budget = budget
        self.trials_run = 0  # trials it ran (Worker.run also counts one it handed back as the group stopped)

    def _process_context(self) -> Any:
        return _StopAwareContext(super()._process_context(), self.stop)

    def _should_exit_idle(self, idle_since: float) -> bool:
        return self.stop.is_set() or self.budget.spent or super()._should_exit_idle(idle_since)

    def run_trial(self, claimed: ClaimedTrial) -> None:
        if self.stop.is_set() or not self.budget.take():
            self.store.release(claimed.trial_id, self.id, attempt=claimed.attempt)  # claimed as it stopped: back
            self.max_trials = 0  # the loop ends after this call
            if self.stop.is_set():
                raise KeyboardInterrupt
            return
        self.trials_run += 1
        super().run_trial(claimed)
        if self.budget.spent:
            self.max_trials = 0

    def run_final_job(self, job: FinalJobRecord) -> None:
        if self.stop.is_set():
            reason = "its worker was interrupted; resumes from its backup"
            self.store.requeue_final_job(job.id, reason, self.id, attempt=job.attempt)
            raise KeyboardInterrupt
        super().run_final_job(job)


class SlotGroup:
    """K slots in threads of this process (see the module). ``open_store`` makes each slot's store.

    >>> SlotGroup(lambda: open_store(url), 4, WorkerOptions(study="mnist", idle_timeout=60)).run()  # doctest: +SKIP
    7
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        slots: int,
        options: WorkerOptions,
        *,
        max_trials: int | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.stop = threading.Event()
        budget = _Budget(max_trials)
        self.slots = [SlotWorker(open_store(), options, stop=self.stop, budget=budget) for _ in range(slots)]
        self.gpu = options.gpu
        self.done = [threading.Event() for _ in range(slots)]
        self.errors: list[BaseException] = []

    def run(self) -> int:
        """Run the slots until each is done (idle, budget spent, study finished) or told to stop; returns how
        many trials they ran. An interrupt stops every slot (each hands its trial back), then is re-raised;
        an error in one slot stops the others and is re-raised."""
        if self.gpu is not None:
            share_gpu(len(self.slots))
        # The fork server starts here, in the main thread: a fork-unsafe preload fails the command at once.
        self.slots[0]._process_context()
        threads = [
            threading.Thread(target=self._run_slot, args=(index,), name=f"hpsearch-slot-{index}", daemon=True)
            for index in range(len(self.slots))
        ]
        for thread in threads:
            thread.start()
        # Each slot sets its event when done. Not Thread.join: a join that a signal interrupts can mark a thread
        # that still runs as stopped (CPython's bpo-45274 fix), and the interrupt would return before a slot
        # handed its trial back.
        try:
            for done in self.done:
                while not done.wait(0.2):  # short waits: the main thread must stay free to take a signal
                    pass
        except KeyboardInterrupt:
            self.stop.set()
            for done in self.done:
                done.wait()
            raise
        if self.errors:
            raise self.errors[0]
        return sum(slot.trials_run for slot in self.slots)

    def _run_slot(self, index: int) -> None:
        try:
            self.slots[index].run()
        except KeyboardInterrupt:
            pass  # the group was told to stop: the slot handed its trial back
        except BaseException as exc:
            log.error("slot %d stopped: %s", index, exc)
            self.errors.append(exc)
            self.stop.set()
        finally:
            self.slots[index].store.engine.dispose()
            self.done[index].set()


def run_worker(
    open_store: Callable[[], Store],
    url: str,
    *,
    slots: int = 1,
    gpu: str | None = None,
    study: str | None = None,
    max_trials: int | None = None,
    idle_timeout: float | None = None,
    exit_when_done: bool = False,
) -> int:
    """What ``hpsearch worker`` runs: one Worker (``slots=1``), a :class:`SlotGroup`, or with ``gpu="all"``
    one such worker process per visible GPU (each with ``max_trials`` of its own). With a GPU, its memory is
    shared as :mod:`hpsearch.execution.gpu` says. Returns the trials run (0 for ``gpu="all"``)."""
    if gpu == "all":
        gpus = visible_gpus()
        if not gpus:
            raise no_gpu_error()
        arguments = ["--slots", str(slots), *(["--study", study] if study else [])]
        arguments += [*(["--max-trials", str(max_trials)] if max_trials else [])]
        arguments += [*(["--idle-timeout", str(idle_timeout)] if idle_timeout is not None else [])]
        arguments += ["--exit-when-done"] if exit_when_done else []
        # The URL travels in the environment, not on the command line, where `ps` would show its password.
        code = run_per_gpu(gpus, arguments, {**os.environ, "HPSEARCH_DB": url})
        if code:
            raise HpsearchError("--gpu all", f"a GPU's worker exited with code {code}")
        return 0
    options = WorkerOptions(gpu=gpu, study=study, idle_timeout=idle_timeout, exit_when_done=exit_when_done)
    if slots == 1:
        if gpu is not None:
            share_gpu(1)
        return Worker(open_store(), max_trials=max_trials, **vars(options)).run()
    return SlotGroup(open_store, slots, options, max_trials=max_trials).run()
