"""The worker: claims trials, keeps their lease alive, runs each in a child process, writes its reports.

It never decides what to try. A study's data is loaded once and written as .npy files, which every trial's
child memory-maps. Children fork from a server that has imported keras once, so a trial starts in well
under a second, and a crash, an OOM or a leak in one trial ends only that child. The worker's own process
never imports keras: the loader, the trials and the final jobs all run in such children
(:mod:`hpsearch.execution.children`), so a worker pays for keras once, not twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.execution.backends import worker_backend
from hpsearch.execution.children import load_data, train_trial
from hpsearch.execution.failures import first_line
from hpsearch.execution.final_run import FinalRun
from hpsearch.execution.forksafety import check_probe, probe_fork_server
from hpsearch.execution.leases import LeaseKeeper
from hpsearch.execution.loading import hypermodel_label
from hpsearch.execution.protocol import (
    CheckpointWritten,
    ChildFailed,
    EpochEnded,
    Message,
    RestartedFromScratch,
    TrialDone,
)
from hpsearch.execution.supervisor import Beat, Ending, Supervisor
from hpsearch.execution.tasks import TrialTask
from hpsearch.limits import first_too_long
from hpsearch.paths import UnsafePath, artifact_path, stored_artifact
from hpsearch.spec import StudySpec
from hpsearch.store import ClaimedTrial, Store, StudyState, TrialState
from hpsearch.store.records import FinalJobRecord, NewArtifact, StudyRecord

log = logging.getLogger("hpsearch.execution.worker")
# An idle worker marks itself alive this often (the coordinator counts workers seen within 30 s), not at
# every empty poll: idle polls of many workers would otherwise load the database for nothing.
ALIVE_SECONDS = 5.0


@dataclass
class _StudyCache:
    study: StudyRecord
    spec: StudySpec
    data_dir: Path


@dataclass(frozen=True)
class WorkerOptions:
    """Which GPU and study a worker serves and when it stops waiting: what every slot of a ``--slots K`` worker
    shares (:class:`~hpsearch.execution.slots.SlotGroup`), kept in one place so the slots and a single worker
    cannot drift apart. Its fields are keywords of :class:`Worker`.

    >>> Worker(store, max_trials=3, **vars(WorkerOptions(study="mnist", idle_timeout=60)))  # doctest: +SKIP
    """

    gpu: str | None = None
    study: str | None = None
    idle_timeout: float | None = None
    exit_when_done: bool = False
    poll_seconds: float = 1.0


# What the fork server imports once, before forking any trial (keras: seconds).
FORK_SERVER_PRELOAD = ["hpsearch.execution.preload", "hpsearch.execution.training", "hpsearch.execution.finaljob"]


class Worker:
    def __init__(
        self,
        store: Store,
        *,
        gpu: str | None = None,
        study: str | None = None,
        max_trials: int | None = None,
        idle_timeout: float | None = None,
        exit_when_done: bool = False,
        poll_seconds: float = 1.0,
        final_job: int | None = None,
    ) -> None:
        self.store = store
        self.gpu = gpu
        self.study_id = store.study(study).id if study else None
        self.max_trials = max_trials
        self.idle_timeout = idle_timeout
        self.exit_when_done = exit_when_done
        self.poll_seconds = poll_seconds
        self.final_job = final_job  # run only this final job (``hpsearch promote --local``)
        self.cache: dict[int, _StudyCache] = {}
        self.scratch = Path()
        self.name = ""
        self.id = -1
        self._context: Any = None
        self.exiting: list[Any] = []  # children that reported their result and are still exiting

    def _process_context(self) -> Any:
        if self._context is None:
            if self.gpu is not None:
                # Before the fork server starts, so every trial sees only this worker's GPU.
                os.environ["CUDA_VISIBLE_DEVICES"] = self.gpu
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(FORK_SERVER_PRELOAD)
            # Start the fork server (it imports keras: seconds) before claiming anything, so no lease runs
            # out while a first trial waits for it; its first child checks it is safe to fork (no JAX runtime).
            warm_up = context.Process(target=probe_fork_server)
            warm_up.start()
            warm_up.join()
            check_probe(warm_up.exitcode, FORK_SERVER_PRELOAD)
            self._context = context
        return self._context

    def run(self) -> int:
        """Claim and run trials until told to stop; returns how many trials this worker ran. Each call
        registers a new worker row and loads study data afresh."""
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.scratch = Path(tempfile.mkdtemp(prefix="hpsearch-worker-"))
        self.cache = {}
        self._process_context()
        self.id = self.store.register_worker(self.name, socket.gethostname(), os.getpid(), self.gpu, *worker_backend())
        log.info("worker %s started", self.name)
        ran = 0
        idle_since = alive_at = time.monotonic()
        try:
            while self.max_trials is None or ran < self.max_trials:
                if self.final_job is not None:
                    job = self.store.claim_final_job(self.id, job_id=self.final_job)
                    if job is not None:
                        self.run_final_job(job)
                        ran += 1
                    break
                claimed = self.store.claim_next(self.id, self.study_id)  # trials first, then promotions
                if isinstance(claimed, FinalJobRecord):
                    self.run_final_job(claimed)
                    ran += 1
                    idle_since = time.monotonic()
                    continue
                if claimed is None:
                    if time.monotonic() - alive_at >= ALIVE_SECONDS:  # a claim marks it alive too
                        self.store.worker_alive(self.id, "IDLE")
                        alive_at = time.monotonic()
                    if self._should_exit_idle(idle_since):
                        break
                    time.sleep(self.poll_seconds)
                    continue
                try:
                    self.run_trial(claimed)
                except KeyboardInterrupt:  # also while loading its data: hand the trial back unharmed
                    self.store.release(claimed.trial_id, self.id, attempt=claimed.attempt)
                    raise
                ran += 1
                idle_since = alive_at = time.monotonic()
        finally:
            self.reap_exited()
            self.store.worker_stopped(self.id)
            shutil.rmtree(self.scratch, ignore_errors=True)
            log.info("worker %s stopped after %d trials", self.name, ran)
        return ran

    def reap_exited(self, timeout: float = 30.0) -> None:
        """Wait for children that reported their result to exit; kill one that hangs on its way out."""
        for child in self.exiting:
            child.join(timeout)
            if child.is_alive():
                child.kill()
                child.join()
        self.exiting.clear()  # in place: a trial run holds this list to hand its child over

    def _should_exit_idle(self, idle_since: float) -> bool:
        if self.idle_timeout is not None and time.monotonic() - idle_since >= self.idle_timeout:
            return True
        if self.exit_when_done and self.study_id is not None:
            return self.store.study_state(self.study_id) != StudyState.RUNNING
        return False

    def _study(self, study_id: int) -> _StudyCache:
        cached = self.cache.get(study_id)
        if cached is None:
            study = self.store.study_by_id(study_id)
            spec = StudySpec.model_validate(study.spec)
            data_dir = self.scratch / f"data-{study_id}"
            self._load_data(spec.study.data, study.base_dir, data_dir)
            cached = self.cache[study_id] = _StudyCache(study, spec, data_dir)
        return cached

    def _load_data(self, ref: str, base_dir: str, data_dir: Path) -> None:
        """Run the study's loader in a child of the fork server (keras is loaded there, and a loader that
        imports it costs this process nothing); raise with the loader's error."""
        context = self._process_context()
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=load_data, args=(ref, base_dir, str(data_dir), sender))
        child.start()
        sender.close()
        try:
            error = receiver.recv()  # None, or the loader's error in one line
        except EOFError:  # it died (out of memory?) before it could say why
            child.join()
            error = f"its process ended with exit code {child.exitcode} before it reported (out of memory?)"
        except BaseException:  # an interrupt (SIGINT, SIGTERM) on its way up: stop the loader too
            child.kill()
            raise
        finally:
            child.join()
            receiver.close()
        if error is not None:
            raise RuntimeError(error)

    def _child_settings(self, cached: _StudyCache) -> dict[str, Any]:
        """What a trial's and a final job's child both take from the study: hypermodel, data, [fit], K-fold."""
        spec, study = cached.spec, cached.study
        return {
            "space": self.store.study_by_id(study.id).space,  # it grows as trials declare parameters
            "hypermodel": hypermodel_label(spec),
            "base_dir": study.base_dir,
            "data_dir": str(cached.data_dir),
            "batch_size": spec.fit.batch_size,
            "shuffle": spec.fit.shuffle,
            "class_weight": {int(k): v for k, v in spec.fit.class_weight.items()},
            "callbacks": [{"name": c.name, **c.kwargs} for c in spec.fit.callbacks],
            "mixed_precision": spec.fit.mixed_precision,
            "jit_compile": spec.fit.jit_compile,
            "cv_folds": spec.search.cv_folds,
            "cv_repeats": spec.search.cv_repeats,
            "study_spec": study.spec if spec.automl is not None else None,
        }

    def _task(self, claimed: ClaimedTrial, cached: _StudyCache) -> TrialTask:
        spec, study = cached.spec, cached.study
        root = study.artifact_root
        return TrialTask(
            study_name=study.name,
            number=claimed.number,
            params=claimed.params,
            objectives=[o["name"] for o in study.objectives or [{"name": study.objective_name}]],
            budget_epochs=claimed.budget_epochs,
            initial_epoch=claimed.initial_epoch,
            seed=claimed.seed,
            checkpoint_dir=str(artifact_path(root, study.name, "trials", claimed.number)),
            artifact_root=root,
            attempt=claimed.attempt,
            resume_from=claimed.checkpoint_uri,
            resume_sha256=claimed.checkpoint_sha256,
            checkpoint_seconds=spec.run.checkpoint_seconds,
            tensorboard_dir=str(artifact_path(root, study.name, "tensorboard", f"trial-{claimed.number}"))
            if spec.run.tensorboard
            else None,
            **self._child_settings(cached),
        )

    def run_trial(self, claimed: ClaimedTrial) -> None:
        # The lease is renewed from the claim on: importing the user's module and loading its data may take
        # longer than the lease. Every write carries the claim's attempt (the fencing token).
        attempt = claimed.attempt

        def beat() -> Beat:
            return self.store.heartbeat(claimed.trial_id, self.id, claimed.lease_seconds, attempt=attempt)

        with LeaseKeeper(beat, claimed.heartbeat_seconds) as keeper:
            prepared = self._prepare(claimed)
        if isinstance(prepared, str):
            self.store.finish(claimed.trial_id, self.id, TrialState.FAILED, prepared, attempt=attempt)
            return
        if keeper.answer == "lost":
            log.warning("trial %d: lease lost while loading its data; abandoning it", claimed.number)
            return
        cached, task = prepared
        log.info("trial %s/%d: %s", cached.study.name, claimed.number, claimed.params)
        try:
            _TrialRun(self, claimed, cached, task, keeper.next_beat_at).run()
        except KeyboardInterrupt:  # SIGINT or SIGTERM: hand the trial back unharmed before exiting
            self.store.release(claimed.trial_id, self.id, attempt=attempt)
            raise

    def _prepare(self, claimed: ClaimedTrial) -> tuple[_StudyCache, Any] | str:
        """The study's data and the trial's task, or why the trial fails."""
        try:
            cached = self._study(claimed.study_id)
        except Exception as exc:  # the data loader broke after the study was created
            return f"loading data: {exc}"
        try:
            return cached, self._task(claimed, cached)
        except UnsafePath as exc:  # a study name written into the database by hand, e.g. "../x"
            return f"{exc.where}: {exc.what}"

    def run_final_job(self, job: FinalJobRecord) -> None:
        settings = self.store.study_by_id(job.study_id).spec["run"]
        attempt = job.attempt  # the fencing token, as for trials: every write names it

        def beat() -> Beat:
            alive = self.store.final_job_heartbeat(job.id, self.id, settings["lease_seconds"], attempt=attempt)
            return "continue" if alive else "lost"

        with LeaseKeeper(beat, settings["heartbeat_seconds"]) as keeper:  # loading data may outlast the lease
            try:
                cached = self._study(job.study_id)
            except Exception as exc:
                self.store.fail_final_job(job.id, self.id, f"loading data: {exc}", attempt=attempt)
                return
        if keeper.answer == "lost":
            log.warning("final job %d: lease lost while loading its data; abandoning it", job.number)
            return
        log.info("final job %s/%d: trial %s", cached.study.name, job.number, job.params)
        run = FinalRun(self, job, cached)
        try:
            task = run.task()
        except UnsafePath as exc:  # a study name written into the database by hand, e.g. "../x"
            self.store.fail_final_job(job.id, self.id, f"{exc.where}: {exc.what}", attempt=attempt)
            return
        try:
            run.run(task)
        except KeyboardInterrupt:
            reason = "its worker was interrupted; resumes from its backup"
            self.store.requeue_final_job(job.id, reason, self.id, attempt=attempt)
            raise


class _TrialRun(Supervisor):
    """One trial's child process, followed by the worker: writes its epochs and checkpoints, then its outcome."""

    def __init__(
        self, worker: Worker, claimed: ClaimedTrial, cached: _StudyCache, task: Any, first_beat_at: float
    ) -> None:
        run = cached.spec.run
        super().__init__(
            # Before the first trial the context exists only if the worker started (a unit test builds one bare).
            worker._context,
            heartbeat_seconds=run.heartbeat_seconds,
            # The lease keeper renewed the lease while the data loaded: go on from its next renewal.
            first_beat_at=first_beat_at,
            timeout=cached.spec.search.trial_timeout,
            exiting=worker.exiting,
        )
        self.worker = worker
        self.task = task
        self.store = worker.store
        self.claimed = claimed
        self.attempt = claimed.attempt  # every write is refused once another attempt holds the trial
        self.cached = cached
        # Why this worker stopped the child itself (a message the database cannot hold): the trial fails so.
        self.refused: str | None = None

    def run(self) -> None:
        self.context = self.worker._process_context()
        self.conclude(self.supervise(train_trial, self.task))

    def started(self) -> None:
        self.worker.reap_exited()

    def beat(self) -> Beat:
        return self.store.heartbeat(
            self.claimed.trial_id, self.worker.id, self.cached.spec.run.lease_seconds, attempt=self.attempt
        )

    def receive(self, message: Message) -> bool:
        study = self.cached.study
        match message:
            case EpochEnded(epoch=epoch, logs=logs):
                # The child refuses such names first; this guard keeps a bad row from failing the worker.
                too_long = first_too_long(logs, "metric")
                if too_long is not None:
                    self.refused = f"{too_long} (logged at epoch {epoch})"
                    return False  # the child is stopped; conclude() fails the trial
                others = [o["name"] for o in (study.objectives or [])[1:]]
                return self.store.record_epoch(
                    self.claimed.trial_id,
                    self.worker.id,
                    epoch,
                    logs,
                    study.objective_name,
                    study.direction,
                    others,
                    attempt=self.attempt,
                )
            case CheckpointWritten(epoch=epoch, uri=uri, sha256=sha256, size_bytes=size):
                artifact = NewArtifact(
                    study_id=study.id, trial_id=self.claimed.trial_id, kind="checkpoint", epoch=epoch, uri=uri,
                    sha256=sha256, size_bytes=size,
                )  # fmt: skip
                recorded = self.store.record_checkpoint(artifact, self.worker.id, attempt=self.attempt)
                if not recorded.accepted:  # a stale attempt: stop the trial, delete nothing (files are the owner's)
                    log.warning("trial %d: checkpoint refused, another attempt holds it", self.claimed.number)
                    return False
                if recorded.replaced is not None:
                    try:
                        stored_artifact(study.artifact_root, recorded.replaced).unlink(missing_ok=True)
                    except UnsafePath as exc:
                        log.warning("not deleting %s: %s", recorded.replaced, exc.what)
            case RestartedFromScratch(reason=reason):
                log.warning("trial %d: %s", self.claimed.number, reason)
                self.store.restart_from_scratch(self.claimed.trial_id, self.worker.id, reason, attempt=self.attempt)
        return True

    def conclude(self, ending: Ending) -> None:
        """Write how the trial ended: completed (pruned if a stop was requested), failed, released or retried."""
        trial_id, worker_id, attempt = self.claimed.trial_id, self.worker.id, self.attempt
        if self.refused is not None:
            self.store.finish(trial_id, worker_id, TrialState.FAILED, self.refused, {}, attempt=attempt)
            return
        if ending.lost:
            log.warning("trial %d: lease lost to another worker; abandoning it", self.claimed.number)
            return
        if ending.request == "pause":
            self.store.release(trial_id, worker_id, attempt=attempt)
            return
        match ending.result:
            case TrialDone(values=values, space=space_entries) if (
                too_long := first_too_long(values, "parameter")
            ) is not None:  # declared in the hypermodel's fit, unseen at creation
                self.store.finish(trial_id, worker_id, TrialState.FAILED, too_long, {}, attempt=attempt)
            case TrialDone(values=values, space=space_entries):
                extra_params = {k: v for k, v in values.items() if k not in self.claimed.params}
                known = {entry["config"]["name"] for entry in self.task.space["space"]}
                if any(entry["config"]["name"] not in known for entry in space_entries):
                    self.store.extend_space(self.cached.study.id, space_entries)  # declared in fit: new to the study
                state = TrialState.PRUNED if ending.request == "stop" else TrialState.COMPLETED
                self.store.finish(trial_id, worker_id, state, None, extra_params, attempt=attempt)
            case ChildFailed(reason=reason, recurring=recurring):
                # Every trial would fail so: fail the study first (no coordinator completes it), if this
                # attempt still holds the trial (a stale worker never fails a study).
                if recurring and self.beat() != "lost":
                    message = f"trial {self.claimed.number} failed with an error every trial would repeat: "
                    self.store.set_study_state(self.cached.study.id, StudyState.FAILED, message + first_line(reason))
                    log.error("study %s failed: %s", self.cached.study.name, message + first_line(reason))
                self.store.finish(trial_id, worker_id, TrialState.FAILED, reason, {}, attempt=attempt)
            case _ if ending.timed_out:
                timeout = self.cached.spec.search.trial_timeout or 0
                error = f"timed out after {timeout:g}s (search.trial_timeout)"
                self.store.finish(trial_id, worker_id, TrialState.FAILED, error, {}, attempt=attempt)
            case _:
                state_after = self.store.retry(trial_id, worker_id, ending.exit, attempt=attempt)
                log.warning("trial %d: %s; now %s", self.claimed.number, ending.exit, state_after)
