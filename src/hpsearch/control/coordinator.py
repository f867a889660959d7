"""The coordinator loop: expire leases, ask each running study's strategy for trials, queue them, apply
stops and budgets, and close studies that are done. Never imports keras; its state is the database, so a
restart resumes, and a second coordinator stands by: each study is planned by the holder of its lease.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from hpsearch.control.recovery import repair_dead_workers
from hpsearch.control.studies import study_context, study_search
from hpsearch.errors import StoreError
from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.records import StudyRecord
from hpsearch.strategies import NewTrial, TrialView, make_strategy

log = logging.getLogger("hpsearch.control.coordinator")

LIVE_WORKER_SECONDS = 30.0
HOUSEKEEPING_SECONDS = 1.0


def _epochs_committed(history: Sequence[TrialView]) -> int:
    """Epochs trained by finished trials plus epochs reserved by queued and running ones."""
    return sum(
        max(0, t.epochs_done - t.initial_epoch) if t.finished else t.budget_epochs - t.initial_epoch for t in history
    )


class _History:
    """One study's trials as the strategies see them, kept between ticks. A finished trial never changes, so
    a tick reads only the trials added since the last one and those still queued or running: the cost of
    a tick does not grow with the study (a restart reads everything once)."""

    def __init__(self, with_curves: bool) -> None:
        self.with_curves = with_curves
        self.trials: list[TrialView] = []
        self.position: dict[int, int] = {}  # trial number -> index in self.trials
        self.open: set[int] = set()  # numbers of trials not finished

    def refresh(self, store: Store, study_id: int) -> list[TrialView]:
        if not self.trials:
            changed = store.history(study_id, with_curves=self.with_curves)
        else:
            last = self.trials[-1].number
            changed = store.history(
                study_id, with_curves=self.with_curves, after_number=last, numbers=sorted(self.open)
            )
        for view in changed:
            index = self.position.get(view.number)
            if index is None:
                self.position[view.number] = len(self.trials)
                self.trials.append(view)
            else:
                self.trials[index] = view
            if view.finished:
                self.open.discard(view.number)
            else:
                self.open.add(view.number)
        return list(self.trials)

    def unfinished(self) -> list[TrialView]:
        """The trials still queued or running, without a pass over the whole history."""
        return [self.trials[self.position[number]] for number in sorted(self.open)]


def refill(queued: int, target: int) -> int:
    """How many trials to plan now, with ``queued`` waiting and ``target`` wanted (one per live worker plus
    the prefetch): none while the queue holds more than half the target, else enough to reach it.

    Why not top the queue up at every tick: a tick costs the same reads, model fit and insert whether it
    plans one trial or twenty, and a coordinator faster than its workers then ticks again as each trial is
    claimed, planning one or two at a time. Refilling at half the target shares each tick's cost among at
    least half a target of trials, and the workers never find the queue empty: half a target is still
    waiting when planning starts. The count comes from the database, so a restarted coordinator decides the
    same.

    >>> refill(queued=10, target=18), refill(queued=9, target=18), refill(queued=0, target=1)
    (0, 9, 1)
    """
    return target - queued if queued <= target // 2 else 0


class Coordinator:
    def __init__(
        self,
        store: Store,
        studies: Sequence[str] | None = None,
        *,
        poll_seconds: float = 0.5,
        prefetch: int = 2,
        lease_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.study_names = list(studies) if studies else None
        self.poll_seconds = poll_seconds
        # Trials queued beyond one per live worker: workers never wait on a tick, nor on a failover.
        self.prefetch = prefetch
        self.lease_seconds = lease_seconds
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._histories: dict[int, _History] = {}
        self._checked_at = -float("inf")  # last lease expiry and live-worker count (monotonic clock)
        self._live_workers = 0
        self.queued = 0  # trials the last tick queued

    def history(self, study_id: int, with_curves: bool) -> list[TrialView]:
        """The study's trials, read incrementally (see _History)."""
        cached = self._histories.get(study_id)
        if cached is None or cached.with_curves != with_curves:
            cached = self._histories[study_id] = _History(with_curves)
        return cached.refresh(self.store, study_id)

    def running_studies(self) -> list[StudyRecord]:
        studies = self.store.studies([StudyState.RUNNING])
        if self.study_names is not None:
            studies = [s for s in studies if s.name in self.study_names]
        return studies

    def tick(self) -> list[StudyRecord]:
        """One pass over every running study whose lease this coordinator holds; returns the running
        studies (held or not)."""
        self.queued = 0
        self.store.check_database_file()  # a deleted SQLite file fails the run loudly, not with exit 0
        studies = self.running_studies()
        # Leases last seconds and workers count as live for 30 s: checking both once a second is enough,
        # and keeps a fast tick loop (many trials a second) from repeating them.
        if time.monotonic() - self._checked_at >= HOUSEKEEPING_SECONDS:
            self._checked_at = time.monotonic()
            if studies:
                expired = self.store.expire_leases({s.id: s.spec["search"]["max_retries"] for s in studies})
                if expired:
                    log.warning("%d trial leases expired; trials re-queued", expired)
            self._live_workers = self.store.live_workers(LIVE_WORKER_SECONDS)
        target = max(1, self._live_workers) + self.prefetch
        running = []
        for study in studies:
            if not self.store.hold_coordinator_lease(study.id, self.name, self.lease_seconds):
                running.append(study)  # another coordinator plans it; this one stands by
                continue
            try:
                still_running = self.step(study, target)
            except StoreError:
                raise  # the database stayed away past the store's retries: stop, a restart resumes
            except Exception as exc:  # a strategy that cannot plan ends its study, not the coordinator
                message = f"planning failed: {type(exc).__name__}: {exc}"
                log.exception("study %s: %s", study.name, message)
                self.store.set_study_state(study.id, StudyState.FAILED, message)
                still_running = False
            if still_running:
                running.append(study)
            else:
                self._histories.pop(study.id, None)
        return running

    def step(self, study: StudyRecord, target_queued: int) -> bool:
        """Plan trials for one study, as just read from the database (its space may have grown: parameters
        declared in fit); returns False when the study has ended."""
        search = study_search(study)  # the stored [search], with auto's recorded pick set in
        limit = search["max_consecutive_failures"]
        failures = self.store.consecutive_failures(study.id, up_to=limit, since=study.failures_reset_at)
        if failures >= limit:
            message = f"{failures} consecutive trials failed (max_consecutive_failures = {limit})"
            self.store.set_study_state(study.id, StudyState.FAILED, message)
            log.error("study %s failed: %s", study.name, message)
            return False
        strategy = make_strategy(search, study.base_dir)  # user samplers import here: see strategies.user
        if study.id not in self._histories:
            strategy.prepare()
        history = self.history(study.id, with_curves=strategy.needs_curves)
        context = study_context(study)
        unfinished = self._histories[study.id].unfinished()
        running = [t.number for t in unfinished if t.state == TrialState.RUNNING]
        active = any(t.state in (TrialState.QUEUED, TrialState.RUNNING) for t in unfinished)

        out_of_time = search.get("max_wall_time") and self.store.now() - study.created_at > timedelta(
            seconds=search["max_wall_time"]
        )
        if out_of_time:
            reason = f"max_wall_time of {search['max_wall_time']:g}s reached"
            closed = self.store.close_queued(study.id, f"never started: {reason}")
            if running:
                self.store.request_stop(study.id, running)
            if closed or running:
                log.info("study %s: %s; %d queued closed, stopping %s", study.name, reason, closed, running)
            return self._finish_when_idle(study, active=bool(running), message=reason)

        stop = strategy.to_stop(context, history)
        if stop:
            self.store.request_stop(study.id, stop)
            log.info("study %s: stopping trials %s", study.name, stop)
        queued = sum(t.state == TrialState.QUEUED for t in unfinished)
        new = strategy.plan(context, history, refill(queued, target_queued))
        new, out_of_epochs = self._within_epoch_budget(search, history, new)
        if new:
            numbers = self.store.add_trials(study, new)
            self.queued += len(numbers)
            log.info("study %s: queued trials %s", study.name, numbers)
            return True
        if out_of_epochs:
            return self._finish_when_idle(study, active, f"max_total_epochs of {search['max_total_epochs']} reached")
        if not active and strategy.is_finished(context, history):
            return self._finish_when_idle(study, active=False, message=None)
        return True

    def _within_epoch_budget(
        self, search: dict, history: Sequence[TrialView], planned: list[NewTrial]
    ) -> tuple[list[NewTrial], bool]:
        """Keep the planned trials that fit max_total_epochs; True when the budget stopped planning."""
        budget = search.get("max_total_epochs")
        if budget is None:
            return planned, False
        committed = _epochs_committed(history)
        kept: list[NewTrial] = []
        for trial in planned:
            cost = trial.budget_epochs - trial.initial_epoch
            if committed + cost > budget:
                return kept, True
            committed += cost
            kept.append(trial)
        return kept, committed >= budget

    def _finish_when_idle(self, study: StudyRecord, active: bool, message: str | None) -> bool:
        if active:
            return True
        if self.store.study_state(study.id) != StudyState.RUNNING:
            return False  # a worker failed it meanwhile (an error every trial would repeat): keep its verdict
        self.store.set_study_state(study.id, StudyState.COMPLETED, message)
        log.info("study %s completed%s", study.name, f": {message}" if message else "")
        return False

    def run(self, *, until_done: bool = False, on_tick: Callable[[], None] | None = None) -> None:
        """Loop forever, or until no watched study is running (``until_done``). First, what a killed run on
        this machine left behind is repaired (see control.recovery)."""
        repair_dead_workers(self.store)
        while True:
            still_running = self.tick()
            if on_tick is not None:
                on_tick()
            if until_done and not still_running:
                return
            if not self.queued:  # after a tick that queued trials, workers want more: no pause
                time.sleep(self.poll_seconds)
