"""The worker: claims trials, keeps their lease alive, runs each in a child process, writes its reports.

It never decides what to try. It loads a study's data once, writes it as .npy files, and every trial's
child memory-maps them. Children fork from a server that has imported keras once, so a trial starts in
well under a second, and a crash, an OOM or a leak in one trial ends only that child.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.execution.loading import hypermodel_label, load_dataset, save_dataset
from hpsearch.paths import UnsafePath, artifact_path, stored_artifact
from hpsearch.spec import StudySpec
from hpsearch.store import ClaimedTrial, Store, StudyState, TrialState
from hpsearch.store.models import Artifact, FinalJob, Study

log = logging.getLogger("hpsearch.execution.worker")
# An idle worker marks itself alive this often (the coordinator counts workers seen within 30 s), not at
# every empty poll: idle polls of many workers would otherwise load the database for nothing.
ALIVE_SECONDS = 5.0


@dataclass
class _StudyCache:
    study: Study
    spec: StudySpec
    data_dir: Path


def _nothing() -> None:
    """The fork server's first child: starting it starts the server."""


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"trial process killed by {name} (out of memory or a crash in native code?)"
    return f"trial process exited with code {exitcode} without reporting a result"


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
            context.set_forkserver_preload(["hpsearch.execution.training", "hpsearch.execution.finaljob"])
            # Start the fork server (it imports keras: seconds) before claiming anything, so no lease runs
            # out while a first trial waits for it.
            warm_up = context.Process(target=_nothing)
            warm_up.start()
            warm_up.join()
            self._context = context
        return self._context

    def run(self) -> int:
        """Claim and run trials until told to stop; returns how many trials this worker ran. Each call
        registers a new worker row and loads study data afresh."""
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.scratch = Path(tempfile.mkdtemp(prefix="hpsearch-worker-"))
        self.cache = {}
        self._process_context()
        self.id = self.store.register_worker(self.name, socket.gethostname(), os.getpid(), self.gpu)
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
                if isinstance(claimed, FinalJob):
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
                self.run_trial(claimed)
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
        self.exiting = []

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
            save_dataset(load_dataset(spec.study.data, study.base_dir), data_dir)
            cached = self.cache[study_id] = _StudyCache(study, spec, data_dir)
        return cached

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
            "cv_folds": spec.search.cv_folds,
            "cv_repeats": spec.search.cv_repeats,
            "study_spec": study.spec if spec.automl is not None else None,
        }

    def _task(self, claimed: ClaimedTrial, cached: _StudyCache) -> Any:
        from hpsearch.execution.training import TrialTask

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
            resume_from=claimed.checkpoint_uri,
            resume_sha256=claimed.checkpoint_sha256,
            checkpoint_seconds=spec.run.checkpoint_seconds,
            tensorboard_dir=str(artifact_path(root, study.name, "tensorboard", f"trial-{claimed.number}"))
            if spec.run.tensorboard
            else None,
            **self._child_settings(cached),
        )

    def run_trial(self, claimed: ClaimedTrial) -> None:
        claimed_at = time.monotonic()
        try:
            cached = self._study(claimed.study_id)
        except Exception as exc:  # the data loader broke after the study was created
            self.store.finish(claimed.trial_id, self.id, TrialState.FAILED, f"loading data: {exc}")
            return
        try:
            task = self._task(claimed, cached)
        except UnsafePath as exc:  # a study name written into the database by hand, e.g. "../x"
            self.store.finish(claimed.trial_id, self.id, TrialState.FAILED, f"{exc.where}: {exc.what}")
            return
        log.info("trial %s/%d: %s", cached.study.name, claimed.number, claimed.params)
        try:
            _TrialRun(self, claimed, cached, task, claimed_at).run()
        except KeyboardInterrupt:  # SIGINT or SIGTERM: hand the trial back unharmed before exiting
            self.store.release(claimed.trial_id, self.id)
            raise

    def run_final_job(self, job: FinalJob) -> None:
        try:
            cached = self._study(job.study_id)
        except Exception as exc:
            self.store.fail_final_job(job.id, self.id, f"loading data: {exc}")
            return
        log.info("final job %s/%d: trial %s", cached.study.name, job.number, job.params)
        run = _FinalRun(self, job, cached)
        try:
            task = run.task()
        except UnsafePath as exc:  # a study name written into the database by hand, e.g. "../x"
            self.store.fail_final_job(job.id, self.id, f"{exc.where}: {exc.what}")
            return
        try:
            run.run(task)
        except KeyboardInterrupt:
            self.store.requeue_final_job(job.id, "its worker was interrupted; resumes from its backup", self.id)
            raise


class _TrialRun:
    """One trial's child process and the worker's side of its pipe."""

    def __init__(
        self, worker: Worker, claimed: ClaimedTrial, cached: _StudyCache, task: Any, claimed_at: float
    ) -> None:
        self.worker = worker
        self.task = task
        self.claimed_at = claimed_at
        self.store = worker.store
        self.claimed = claimed
        self.cached = cached
        self.outcome: tuple[TrialState, str | None] | None = None
        self.extra_params: dict[str, Any] = {}
        self.stopped_by_request = False
        self.paused = False
        self.reported = False  # the child sent its result ("done" or "failed")

    def run(self) -> None:
        from hpsearch.execution.training import run_trial

        context = self.worker._process_context()
        receiver, sender = context.Pipe(duplex=False)
        stop = context.Event()
        child = context.Process(target=run_trial, args=(self.task, sender, stop))
        child.start()
        sender.close()
        self.worker.reap_exited()
        try:
            self._follow(child, receiver, stop)
        finally:
            if self.reported:
                # It sent its result: its exit (TensorFlow's teardown) overlaps the next trial's start.
                self.worker.exiting.append(child)
            elif child.is_alive():
                child.kill()
                child.join()

    def _follow(self, child: Any, receiver: Any, stop: Any) -> None:
        heartbeat = self.cached.spec.run.heartbeat_seconds
        # The claim set the lease: renew one heartbeat later, or at once if loading the study's data took longer.
        next_beat = self.claimed_at + heartbeat
        timeout = self.cached.spec.search.trial_timeout
        deadline = time.monotonic() + timeout if timeout else None
        lost = False
        while not lost:
            if deadline is not None and time.monotonic() > deadline and child.is_alive():
                child.kill()
                self.outcome = (TrialState.FAILED, f"timed out after {timeout:g}s (search.trial_timeout)")
                break
            if receiver.poll(0.2):
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                lost = not self._handle(message)
                if self.reported:
                    break
            elif not child.is_alive() and not receiver.poll(0):
                break
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + heartbeat
                answer = self.store.heartbeat(self.claimed.trial_id, self.worker.id, self.cached.spec.run.lease_seconds)
                if answer == "lost":
                    lost = True
                elif answer in ("stop", "pause") and not stop.is_set():
                    self.stopped_by_request = answer == "stop"
                    self.paused = answer == "pause"
                    stop.set()
        if lost:
            log.warning("trial %d: lease lost to another worker; abandoning it", self.claimed.number)
            child.kill()
            child.join()
            return
        if not self.reported:
            child.join()  # its exit code says why it ended
        if self.paused:
            self.store.release(self.claimed.trial_id, self.worker.id)
            return
        if self.outcome is None:
            reason = describe_exit(child.exitcode)
            state_after = self.store.retry(self.claimed.trial_id, self.worker.id, reason)
            log.warning("trial %d: %s; now %s", self.claimed.number, reason, state_after)
            return
        state, error = self.outcome
        if state == TrialState.COMPLETED and self.stopped_by_request:
            state = TrialState.PRUNED
        self.store.finish(self.claimed.trial_id, self.worker.id, state, error, self.extra_params)

    def _handle(self, message: tuple[Any, ...]) -> bool:
        """Apply one report from the child; False when this worker no longer owns the trial."""
        kind = message[0]
        study = self.cached.study
        if kind == "epoch":
            _, epoch, logs = message
            others = [o["name"] for o in (study.objectives or [])[1:]]
            return self.store.record_epoch(
                self.claimed.trial_id, self.worker.id, epoch, logs, study.objective_name, study.direction, others
            )
        if kind == "checkpoint":
            _, epoch, uri, sha256, size = message
            replaced = self.store.record_checkpoint(
                Artifact(
                    study_id=study.id,
                    trial_id=self.claimed.trial_id,
                    kind="checkpoint",
                    epoch=epoch,
                    uri=uri,
                    sha256=sha256,
                    size_bytes=size,
                )
            )
            if replaced is not None:
                try:
                    stored_artifact(study.artifact_root, replaced).unlink(missing_ok=True)
                except UnsafePath as exc:
                    log.warning("not deleting %s: %s", replaced, exc.what)
        elif kind == "done":
            _, values, space_entries = message
            self.extra_params = {k: v for k, v in values.items() if k not in self.claimed.params}
            known = {entry["config"]["name"] for entry in self.task.space["space"]}
            if any(entry["config"]["name"] not in known for entry in space_entries):
                self.store.extend_space(study.id, space_entries)  # declared in fit: unknown to the study so far
            self.outcome, self.reported = (TrialState.COMPLETED, None), True
        elif kind == "failed":
            self.outcome, self.reported = (TrialState.FAILED, message[1]), True
        elif kind == "restart":
            log.warning("trial %d: %s", self.claimed.number, message[1])
            self.store.restart_from_scratch(self.claimed.trial_id, self.worker.id, message[1])
        return True


class _FinalRun:
    """One final job's child process and the worker's side of its pipe."""

    def __init__(self, worker: Worker, job: FinalJob, cached: _StudyCache) -> None:
        self.worker = worker
        self.store = worker.store
        self.job = job
        self.cached = cached

    def task(self) -> Any:
        from hpsearch.execution.finaljob import FinalTask
        study, spec = self.cached.study, self.cached.spec
        trial = self.store.trial_by_id(self.job.trial_id)
        return FinalTask(
            study_name=study.name,
            job_number=self.job.number,
            trial_number=trial.number,
            params=self.job.params,
            data=spec.study.data,
            objective=study.objective_name,
            direction=study.direction,
            train_on=self.job.train_on,
            epochs=self.job.epochs,
            patience=self.job.patience,
            seed=self.job.seed,
            output_dir=str(artifact_path(study.artifact_root, study.name, "final", self.job.number)),
            thresholds=list(spec.promote.thresholds),
            slices=[list(s) for s in spec.promote.slices],
            task=spec.promote.task,
            formats=list(spec.promote.formats),
            trial_best_epoch=trial.best_epoch or trial.epochs_done,
            **self.worker._child_settings(self.cached),
        )

    def run(self, task: Any) -> None:
        from hpsearch.execution.finaljob import run_final_job

        context = self.worker._process_context()
        receiver, sender = context.Pipe(duplex=False)
        stop = context.Event()
        child = context.Process(target=run_final_job, args=(task, sender, stop))
        child.start()
        sender.close()
        try:
            self._follow(child, receiver)
        finally:
            if child.is_alive():
                child.kill()
                child.join()

    def _follow(self, child: Any, receiver: Any) -> None:
        lease = self.cached.spec.run.lease_seconds
        heartbeat = self.cached.spec.run.heartbeat_seconds
        next_beat = time.monotonic()
        while True:
            if receiver.poll(0.2):
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                if message[0] == "epoch":
                    if not self.store.record_final_epoch(self.job.id, self.worker.id, message[1], message[2]):
                        return self._lost(child)
                elif message[0] == "done":
                    child.join()
                    return self._finish(message[1])
                elif message[0] == "failed":
                    child.join()
                    self.store.fail_final_job(self.job.id, self.worker.id, message[1])
                    log.warning("final job %d failed: %s", self.job.number, message[1].splitlines()[0])
                    return None
            elif not child.is_alive() and not receiver.poll(0):
                break
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + heartbeat
                if not self.store.final_job_heartbeat(self.job.id, self.worker.id, lease):
                    return self._lost(child)
        child.join()
        reason = describe_exit(child.exitcode)
        state = self.store.requeue_final_job(self.job.id, reason, self.worker.id)
        log.warning("final job %d: %s; now %s", self.job.number, reason, state)
        return None

    def _lost(self, child: Any) -> None:
        log.warning("final job %d: lease lost to another worker; abandoning it", self.job.number)
        child.kill()
        child.join()

    def _finish(self, result: dict[str, Any]) -> None:
        artifacts = [
            Artifact(study_id=self.cached.study.id, kind=kind, uri=uri, sha256=sha256, size_bytes=size)
            for kind, uri, sha256, size in result["artifacts"]
        ]
        self.store.finish_final_job(
            self.job.id,
            self.worker.id,
            best_epoch=result["best_epoch"],
            objective=result["objective"],
            test_metrics=result["test_metrics"],
            confusion=result["confusion"],
            class_rows=result["class_rows"],
            slice_rows=result["slice_rows"],
            artifacts=artifacts,
        )
