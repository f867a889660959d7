"""The worker reads its Keras backend as keras will (without importing it), and [run] backend is validated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.execution import backends
from hpsearch.execution.backends import backend_version, keras_backend, use_backend_here
from hpsearch.spec import validate_spec

SPEC = {
    "study": {"name": "s", "hypermodel": "m.py:build", "data": "m.py:load", "objective": "val_loss"},
    "search": {"max_trials": 1, "max_epochs": 1},
}


def test_environment_wins_then_keras_json_then_tensorflow(tmp_path: Path) -> None:
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert keras_backend({"KERAS_HOME": str(tmp_path)}) == "jax"
    assert keras_backend({"KERAS_HOME": str(tmp_path), "KERAS_BACKEND": "torch"}) == "torch"
    assert keras_backend({"KERAS_HOME": str(tmp_path), "KERAS_BACKEND": ""}) == "jax"  # empty: not set
    assert keras_backend({"KERAS_HOME": str(tmp_path / "none")}) == "tensorflow"
    (tmp_path / "keras.json").write_text("{not json")
    assert keras_backend({"KERAS_HOME": str(tmp_path)}) == "tensorflow"


def test_the_answer_is_the_backend_keras_loads(tmp_path: Path) -> None:
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"} | {"KERAS_HOME": str(tmp_path)}
    code = "import keras; print(keras.backend.backend())"
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.split()[-1] == keras_backend(env) == "torch"


def test_versions_come_from_the_installed_package() -> None:
    assert backend_version("tensorflow") == metadata.version("tensorflow")
    assert backend_version("torch") == metadata.version("torch")


def test_run_backend_is_one_of_the_three() -> None:
    spec = validate_spec({**SPEC, "run": {"backend": "jax"}}, "s.toml")
    assert spec.run.backend == "jax" and validate_spec(SPEC, "s.toml").run.backend is None
    with pytest.raises(SpecError) as caught:
        validate_spec({**SPEC, "run": {"backend": "mxnet"}}, "s.toml")
    assert "run.backend" in str(caught.value)


def test_a_local_promote_switches_to_the_required_backend_before_its_fork_server_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # restored after the test
    monkeypatch.setattr(backends, "_fork_server_started", lambda: False)
    assert use_backend_here(None) is None and os.environ["KERAS_BACKEND"] == "tensorflow"
    assert use_backend_here("tensorflow") is None and os.environ["KERAS_BACKEND"] == "tensorflow"
    assert use_backend_here("torch") is None
    assert os.environ["KERAS_BACKEND"] == keras_backend() == "torch"  # the fork server will start with it


def test_a_local_promote_of_another_backend_is_refused_in_one_line_once_the_fork_server_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(backends, "_fork_server_started", lambda: True)
    refused = use_backend_here("jax")
    assert refused is not None and "\n" not in refused
    assert "requires the jax backend" in refused and "already run tensorflow" in refused
    assert "KERAS_BACKEND=jax" in refused and "without --local" in refused
    assert os.environ["KERAS_BACKEND"] == "tensorflow"  # unchanged: the running fork server keeps its backend
    monkeypatch.setattr(backends, "backend_version", lambda backend: None)
    assert "not installed" in (use_backend_here("jax") or "")


@pytest.mark.slow
def test_run_starts_workers_of_the_backend_the_study_requires(db_url: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from hpsearch.api import create_study
    from hpsearch.store import TrialState, open_store
    from hpsearch.store.models import Worker

    from ..conftest import write_tiny_study

    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    path.write_text(path.read_text().replace("[run]\n", '[run]\nbackend = "torch"\n'))
    store = open_store(db_url, create=True)
    create_study(path, store=store, artifacts=tmp_path / "artifacts").run()  # this process: tensorflow
    trial = store.trials(store.study("tiny").id)[0]
    assert trial.state == TrialState.COMPLETED, trial.error
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(Worker.backend, Worker.backend_version)).one()
    assert tuple(row) == ("torch", metadata.version("torch"))
    # `promote --local` from a tensorflow environment runs its final job on torch too (a worker of another
    # backend would not claim it: the job would stay QUEUED).
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "HPSEARCH_DB": db_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    promoted = subprocess.run(
        [sys.executable, "-m", "hpsearch", "promote", "tiny", "--local", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["state"] == "COMPLETED"
    (job,) = store.final_jobs(store.study("tiny").id)
    final_worker = store.final_job_worker(job.id)
    assert final_worker is not None
    with store.engine.connect() as connection:
        backend = connection.execute(sa.select(Worker.backend).where(Worker.id == final_worker.id)).scalar_one()
    assert backend == "torch"
    store.engine.dispose()
