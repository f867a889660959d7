"""A study that requires a Keras backend ([run] backend) is claimed only by workers of that backend; the
workers table records each worker's backend and version. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import Store
from hpsearch.store.models import Worker

from ..conftest import add_study


def test_only_a_worker_of_the_required_backend_claims_the_studys_trials(store: Store) -> None:
    jax_study = add_study(store, "needs-jax", backend="jax")
    store.add_trials(jax_study, [NewTrial({"u": 1}, 3)])
    tf_worker = store.register_worker("tf", "h", 1, None, "tensorflow", "2.21.0")
    old_worker = store.register_worker("old", "h", 2, None)  # no backend recorded: claims no such trial
    jax_worker = store.register_worker("jax", "h", 3, "0", "jax", "0.8.1")
    assert store.claim(tf_worker) is None
    assert store.claim(tf_worker, jax_study.id) is None
    assert store.claim_next(old_worker) is None
    claimed = store.claim(jax_worker)
    assert claimed is not None and claimed.study_id == jax_study.id


def test_a_worker_skips_to_the_next_study_it_may_run_and_any_worker_runs_an_unrestricted_one(store: Store) -> None:
    jax_study = add_study(store, "needs-jax", backend="jax")
    free_study = add_study(store, "any-backend")
    store.add_trials(jax_study, [NewTrial({"u": 1}, 3)])  # older: first in the queue
    store.add_trials(free_study, [NewTrial({"u": 2}, 3)])
    tf_worker = store.register_worker("tf", "h", 1, None, "tensorflow", "2.21.0")
    claimed = store.claim(tf_worker)
    assert claimed is not None and claimed.study_id == free_study.id
    assert store.claim(tf_worker) is None  # the jax trial waits for a jax worker
    torch_study = add_study(store, "needs-torch", backend="torch")
    store.add_trials(torch_study, [NewTrial({"u": 3}, 3)])
    torch_worker = store.register_worker("torch", "h", 2, None, "torch", "2.9.1")
    claimed = store.claim(torch_worker)
    assert claimed is not None and claimed.study_id == torch_study.id


def test_the_workers_row_holds_backend_and_version(store: Store) -> None:
    worker_id = store.register_worker("w", "h", 1, None, "jax", "0.8.1")
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(Worker.backend, Worker.backend_version).where(Worker.id == worker_id)).one()
    assert tuple(row) == ("jax", "0.8.1")
