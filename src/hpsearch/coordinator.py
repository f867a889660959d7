"""The coordinator loop: expire leases, ask each running study's strategy for trials, queue them, and
close studies that are done. Never imports keras; its state is the database, so a restart resumes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.models import Study
from hpsearch.strategies import make_strategy
from hpsearch.study import study_context

log = logging.getLogger("hpsearch.coordinator")

LIVE_WORKER_SECONDS = 30.0


class Coordinator:
    def __init__(
        self, store: Store, studies: Sequence[str] | None = None, *, poll_seconds: float = 0.5, prefetch: int = 1
    ) -> None:
        self.store = store
        self.study_names = list(studies) if studies else None
        self.poll_seconds = poll_seconds
        self.prefetch = prefetch  # trials queued beyond one per live worker, so no worker waits on a tick

    def running_studies(self) -> list[Study]:
        studies = self.store.studies([StudyState.RUNNING])
        if self.study_names is not None:
            studies = [s for s in studies if s.name in self.study_names]
        return studies

    def tick(self) -> list[Study]:
        """One pass over every running study; returns the studies still running."""
        studies = self.running_studies()
        if studies:
            expired = self.store.expire_leases({s.id: s.spec["search"]["max_retries"] for s in studies})
            if expired:
                log.warning("%d trial leases expired; trials re-queued", expired)
        target = max(1, self.store.live_workers(LIVE_WORKER_SECONDS)) + self.prefetch
        return [study for study in studies if self.step(study, target)]

    def step(self, study: Study, target_queued: int) -> bool:
        """Plan trials for one study; returns False when the study has ended."""
        study = self.store.study_by_id(study.id)  # the space may have grown (parameters declared in fit)
        limit = study.spec["search"]["max_consecutive_failures"]
        failures = self.store.consecutive_failures(study.id)
        if failures >= limit:
            message = f"{failures} consecutive trials failed (max_consecutive_failures = {limit})"
            self.store.set_study_state(study.id, StudyState.FAILED, message)
            log.error("study %s failed: %s", study.name, message)
            return False
        strategy = make_strategy(study.spec["search"])
        history = self.store.history(study.id, with_curves=strategy.needs_curves)
        context = study_context(study)
        stop = strategy.to_stop(context, history)
        if stop:
            self.store.request_stop(study.id, stop)
            log.info("study %s: stopping trials %s", study.name, stop)
        queued = sum(t.state == TrialState.QUEUED for t in history)
        new = strategy.plan(context, history, max(0, target_queued - queued))
        if new:
            numbers = self.store.add_trials(study, new)
            log.info("study %s: queued trials %s", study.name, numbers)
            return True
        active = any(t.state in (TrialState.QUEUED, TrialState.RUNNING) for t in history)
        if not active and strategy.is_finished(context, history):
            self.store.set_study_state(study.id, StudyState.COMPLETED)
            log.info("study %s completed", study.name)
            return False
        return True

    def run(self, *, until_done: bool = False, on_tick: Callable[[], None] | None = None) -> None:
        """Loop forever, or until no watched study is running (``until_done``)."""
        while True:
            still_running = self.tick()
            if on_tick is not None:
                on_tick()
            if until_done and not still_running:
                return
            time.sleep(self.poll_seconds)
