"""A study that requires a Keras backend ([run] backend) has its final jobs (promotions) claimed only by
workers of that backend, as its trials are (tests/store/test_backend_claim.py). On SQLite and PostgreSQL."""

from __future__ import annotations

from hpsearch.records import NewTrial
from hpsearch.store import Store, StudyRecord
from hpsearch.store.records import FinalJobRecord, NewFinalJob

from ..conftest import add_study


def queued_final_job(store: Store, study: StudyRecord) -> FinalJobRecord:
    """A promotion of the study's first trial, QUEUED (no worker has seen it yet)."""
    store.add_trials(study, [NewTrial({"u": 1}, 3)])
    trial = store.trial(study.id, 0)
    job, created = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=trial.id, params=trial.params, train_on="train", epochs=3, seed=1)
    )
    assert created and job.state == "QUEUED"
    return job


def test_only_a_worker_of_the_required_backend_claims_the_studys_final_job(store: Store) -> None:
    job = queued_final_job(store, add_study(store, "needs-jax", backend="jax"))
    tf_worker = store.register_worker("tf", "h", 1, None, "tensorflow", "2.21.0")
    old_worker = store.register_worker("old", "h", 2, None)  # no backend recorded: claims no such job
    assert store.claim_final_job(tf_worker) is None
    assert store.claim_final_job(tf_worker, job_id=job.id) is None  # what `promote --local` asks for
    assert store.claim_final_job(tf_worker, study_id=job.study_id) is None
    assert store.claim_final_job(old_worker) is None
    assert store.final_job(job.id).state == "QUEUED"
    jax_worker = store.register_worker("jax", "h", 3, None, "jax", "0.8.1")
    claimed = store.claim_final_job(jax_worker, job_id=job.id)
    assert claimed is not None and claimed.id == job.id and claimed.worker_id == jax_worker


def test_a_worker_of_another_backend_skips_to_a_final_job_it_may_run(store: Store) -> None:
    torch_job = queued_final_job(store, add_study(store, "needs-torch", backend="torch"))  # older: first in line
    free_job = queued_final_job(store, add_study(store, "any-backend"))
    tf_worker = store.register_worker("tf", "h", 1, None, "tensorflow", "2.21.0")
    # claim_next is a worker's loop (trials first, then promotions): another worker runs both studies' trials.
    busy = store.register_worker("busy", "h", 9, None, "torch", "2.9.1")
    assert all(store.claim(busy, job.study_id) is not None for job in (torch_job, free_job))
    claimed = store.claim_next(tf_worker)
    assert isinstance(claimed, FinalJobRecord) and claimed.id == free_job.id
    assert store.claim_next(tf_worker) is None  # the torch study's promotion waits for a torch worker
    torch_worker = store.register_worker("torch", "h", 2, None, "torch", "2.9.1")
    claimed = store.claim_next(torch_worker)
    assert isinstance(claimed, FinalJobRecord) and claimed.id == torch_job.id
