"""A final job's child process followed by its worker: builds the job's task, renews the job's lease, writes
its epochs, then its evaluation and exported files (or fails or requeues it). Split out of
:mod:`hpsearch.execution.worker`, which claims the job and loads the study's data.

Every write names the claim's attempt (``job.attempt``, the fencing token; see
:mod:`hpsearch.store.final_jobs`). The child works in ``final/<number>/a<attempt>/`` and starts from a copy
of the directory of the attempt whose backup the store accepted last; a refused write (another attempt holds
the job) stops the child, and this worker then deletes nothing. Once this attempt's finish is accepted, the
earlier attempts' directories are deleted: the job is COMPLETED, nobody resumes from them.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch.execution.children import run_final
from hpsearch.execution.protocol import BackupWritten, ChildFailed, EpochEnded, FinalResult, Message
from hpsearch.execution.supervisor import Beat, Ending, Supervisor
from hpsearch.execution.tasks import FinalTask
from hpsearch.paths import artifact_path
from hpsearch.store.records import FinalJobRecord, NewArtifact

if TYPE_CHECKING:
    from hpsearch.execution.worker import Worker, _StudyCache

log = logging.getLogger("hpsearch.execution.worker")


class FinalRun(Supervisor):
    """One final job's child process, followed by the worker: writes its epochs, then its outcome."""

    def __init__(self, worker: Worker, job: FinalJobRecord, cached: _StudyCache) -> None:
        super().__init__(None, heartbeat_seconds=cached.spec.run.heartbeat_seconds)
        self.worker = worker
        self.store = worker.store
        self.job = job
        self.attempt = job.attempt  # every write is refused once another attempt holds the job
        self.cached = cached

    def job_dir(self) -> Path:
        """``final/<number>/``: one directory ``a<attempt>`` in it per attempt."""
        study = self.cached.study
        return artifact_path(study.artifact_root, study.name, "final", self.job.number)

    def resume_dir(self) -> Path | None:
        """The directory of the attempt whose backup the store accepted last; for a job that ran before
        attempt directories (migration 0011), ``final/<number>/`` itself when it holds a fit state."""
        if self.job.checkpoint_attempt is not None:
            return self.job_dir() / f"a{self.job.checkpoint_attempt}"
        legacy = self.job_dir()
        return legacy if (legacy / "fit_state.json").is_file() else None

    def task(self) -> FinalTask:
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
            output_dir=str(self.job_dir() / f"a{self.attempt}"),
            attempt=self.attempt,
            resume_dir=str(resume) if (resume := self.resume_dir()) is not None else None,
            thresholds=list(spec.promote.thresholds),
            slices=[list(s) for s in spec.promote.slices],
            task=spec.promote.task,
            formats=list(spec.promote.formats),
            trial_best_epoch=trial.best_epoch or trial.epochs_done,
            **self.worker._child_settings(self.cached),
        )

    def run(self, task: FinalTask) -> None:
        self.context = self.worker._process_context()
        self.conclude(self.supervise(run_final, task))

    def beat(self) -> Beat:
        lease = self.cached.spec.run.lease_seconds
        alive = self.store.final_job_heartbeat(self.job.id, self.worker.id, lease, attempt=self.attempt)
        return "continue" if alive else "lost"

    def receive(self, message: Message) -> bool:
        match message:
            case EpochEnded(epoch=epoch, logs=logs):
                return self.store.record_final_epoch(self.job.id, self.worker.id, epoch, logs, attempt=self.attempt)
            case BackupWritten(epoch=epoch):
                accepted = self.store.record_final_checkpoint(self.job.id, self.worker.id, epoch, attempt=self.attempt)
                if not accepted:  # a stale attempt: stop the child, delete nothing
                    log.warning("final job %d: backup refused, another attempt holds it", self.job.number)
                return accepted
        return True

    def conclude(self, ending: Ending) -> None:
        """Write how the job ended: completed with its evaluation, failed, or back in the queue."""
        match ending:
            case Ending(lost=True):
                log.warning("final job %d: lease lost to another worker; abandoning it", self.job.number)
            case Ending(result=FinalResult() as result):
                self._finish(result)
            case Ending(result=ChildFailed(reason=reason)):
                self.store.fail_final_job(self.job.id, self.worker.id, reason, attempt=self.attempt)
                log.warning("final job %d failed: %s", self.job.number, reason.splitlines()[0])
            case _:
                state = self.store.requeue_final_job(self.job.id, ending.exit, self.worker.id, attempt=self.attempt)
                log.warning("final job %d: %s; now %s", self.job.number, ending.exit, state)

    def _finish(self, result: FinalResult) -> None:
        artifacts = [
            NewArtifact(study_id=self.cached.study.id, kind=f.kind, uri=f.uri, sha256=f.sha256, size_bytes=f.size_bytes)
            for f in result.artifacts
        ]
        finished = self.store.finish_final_job(
            self.job.id,
            self.worker.id,
            best_epoch=result.best_epoch,
            objective=result.objective,
            test_metrics=result.test_metrics,
            confusion=result.confusion,
            class_rows=result.class_rows,
            slice_rows=result.slice_rows,
            artifacts=artifacts,
            attempt=self.attempt,
        )
        if not finished:  # a stale attempt: its files stay, the job's artifacts are the finishing attempt's
            log.warning("final job %d: result refused, another attempt holds it", self.job.number)
            return
        for earlier in self.job_dir().iterdir():
            if earlier.is_dir() and (found := re.fullmatch(r"a(\d+)", earlier.name)) and int(found[1]) < self.attempt:
                shutil.rmtree(earlier, ignore_errors=True)
