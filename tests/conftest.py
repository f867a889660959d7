"""Shared fixtures. Every test that needs a database gets ``db_url`` and runs on SQLite and PostgreSQL.

PostgreSQL comes from HPSEARCH_TEST_PG (default: the local server, user postgres, trust auth); each test
gets a database of its own. Without a server the PostgreSQL half is skipped, unless HPSEARCH_REQUIRE_PG=1
(as in CI), where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from .pg_guard import ServerState, read_server_state, server_change

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PG_SERVER = os.environ.get("HPSEARCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]


# The machine's server state when the run started, and the line saying how it changed (tests/pg_guard.py).
_SERVER_BEFORE = pytest.StashKey[ServerState | None]()
_SERVER_CHANGE = pytest.StashKey[str]()


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    # The controller reads it once before any worker starts (with or without xdist), so the check spans
    # the whole run.
    if not _is_xdist_worker(session.config):
        session.config.stash[_SERVER_BEFORE] = read_server_state(PG_SERVER)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Runs after every xdist worker has finished; a restarted or reconfigured server fails the run.
    config = session.config
    if _is_xdist_worker(config) or _SERVER_BEFORE not in config.stash:
        return
    before = config.stash[_SERVER_BEFORE]
    if before is None:
        return
    change = server_change(PG_SERVER, before, read_server_state(PG_SERVER))
    if change is not None:
        config.stash[_SERVER_CHANGE] = change
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _SERVER_CHANGE in config.stash:
        terminalreporter.write_line(f"FAILED (server check): {config.stash[_SERVER_CHANGE]}", red=True, bold=True)


def _admin_engine() -> sa.Engine:
    return sa.create_engine(
        PG_SERVER, isolation_level="AUTOCOMMIT", pool_pre_ping=True, connect_args={"connect_timeout": 5}
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hpsearch.db'}"
        return
    name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("HPSEARCH_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {exc}")
        pytest.skip("PostgreSQL is not reachable")
    url = sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    from hpsearch.store import open_store

    store = open_store(db_url, create=True)
    yield store
    store.engine.dispose()


# One float parameter x in [0, 1], as Keras Tuner's HyperParameters.get_config() stores it.
UNIT_X_SPACE = {
    "space": [
        {
            "class_name": "Float",
            "config": {
                "name": "x",
                "conditions": [],
                "min_value": 0.0,
                "max_value": 1.0,
                "step": None,
                "sampling": "linear",
            },
        }
    ]
}

TINY_MODULE = """
from __future__ import annotations

import os

import numpy as np


def load_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return {"train": (x[:160], y[:160]), "validation": (x[160:200], y[160:200]), "test": (x[200:], y[200:])}


def build_model(hp):
    import keras

    model = keras.Sequential([keras.Input((4,))])
    model.add(keras.layers.Dense(hp.Int("units", 4, 16, step=4), activation=hp.Choice("act", ["relu", "tanh"])))
    if hp.Boolean("extra"):
        with hp.conditional_scope("extra", [True]):
            model.add(keras.layers.Dense(hp.Int("extra_units", 2, 8, step=2), activation="relu"))
    model.add(keras.layers.Dense(2, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log", default=1e-2)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
"""

TINY_STUDY = """
[study]
name = "{name}"
hypermodel = "tiny.py:{build}"
data = "tiny.py:{data}"
objective = "val_accuracy"
seed = 7

[search]
algorithm = "{algorithm}"
max_trials = {max_trials}
max_epochs = {max_epochs}

[fit]
batch_size = 32

[run]
workers = {workers}
lease_seconds = {lease_seconds}
heartbeat_seconds = 0.5
"""


def write_tiny_study(directory: Path, extra_module: str = "", **fields: object) -> Path:
    """A study over a 4-feature synthetic problem: a few seconds per study. Keyword fields fill TINY_STUDY;
    ``extra_module`` is appended to tiny.py (more hypermodels and loaders for a test)."""
    values: dict[str, object] = {
        "name": "tiny",
        "build": "build_model",
        "data": "load_data",
        "algorithm": "random",
        "max_trials": 4,
        "max_epochs": 2,
        "workers": 2,
        "lease_seconds": 30,
    }
    values.update(fields)
    (directory / "tiny.py").write_text(TINY_MODULE + extra_module)
    path = directory / "tiny.toml"
    path.write_text(TINY_STUDY.format(**values))
    return path


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    return write_tiny_study(tmp_path)


def add_study(  # type: ignore[no-untyped-def]
    store, name: str = "demo", max_retries: int = 1, lease_seconds: float = 60.0, backend: str | None = None
):
    """A study row as `hpsearch study create` writes it, without a hypermodel behind it; ``backend`` sets
    ``[run] backend`` (the Keras backend its workers must run)."""
    from hpsearch.store import NewStudy

    run: dict[str, object] = {"lease_seconds": lease_seconds, "heartbeat_seconds": 1.0}
    if backend is not None:
        run["backend"] = backend

    study, _ = store.create_study(
        NewStudy(
            name=name,
            objective_name="val_accuracy",
            direction="max",
            algorithm="random",
            max_trials=1000,
            max_epochs=3,
            seed=0,
            spec={
                "search": {"max_retries": max_retries, "max_consecutive_failures": 3},
                "run": run,
            },
            space={"space": [], "values": {}},
            source_path="/x/demo.toml",
            base_dir="/x",
            artifact_root="/x/a",
        )
    )
    return study
