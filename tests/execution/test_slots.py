"""``hpsearch worker --slots K`` on CPU: K trials at once in one worker process, each in its own child, with
leases, crash handling and stop as for one worker. Overlap is proven, not timed: the trials' hypermodels
wait for each other through files, so each completes only if the other runs at the same time."""

from __future__ import annotations

import dataclasses
import inspect
import os
import signal
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.execution.slots import SlotGroup
from hpsearch.execution.worker import Worker, WorkerOptions
from hpsearch.store import Store, TrialState, open_store
from hpsearch.store.models import Worker as WorkerRow

from ..conftest import write_tiny_study

pytestmark = pytest.mark.slow

# Each build waits only in a trial's process (discovery, in the main process, builds without waiting). The
# grid over the one parameter, role, makes one trial per role; DIR is written in by the test.
RENDEZVOUS = """

import multiprocessing
import signal
import time

DIR = {directory!r}


def _wait_for(pattern, count, what):
    deadline = time.monotonic() + 120
    while len([n for n in os.listdir(DIR) if n.startswith(pattern)]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {{what}} within 120 s: the trials did not run at the same time")
        time.sleep(0.05)


def fixed_model():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def build_together(hp):
    role = hp.Choice("role", ["a", "b"])
    if multiprocessing.current_process().name != "MainProcess":
        open(os.path.join(DIR, f"in-{{role}}-{{os.getpid()}}"), "w").close()
        _wait_for("in-", 2, "other trial")
    return fixed_model()


def build_one_crashes(hp):
    role = hp.Choice("role", ["crash", "steady"])
    if multiprocessing.current_process().name != "MainProcess":
        open(os.path.join(DIR, f"in-{{role}}-{{os.getpid()}}"), "w").close()
        if role == "crash" and not os.path.exists(os.path.join(DIR, "crashed")):
            _wait_for("in-steady", 1, "steady trial")  # the other is running: now crash under it
            open(os.path.join(DIR, "crashed"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        if role == "steady":
            _wait_for("crashed", 1, "crash")  # still running when its neighbour dies
    return fixed_model()


def build_forever(hp):
    role = hp.Choice("role", ["a", "b"])
    if multiprocessing.current_process().name != "MainProcess":
        open(os.path.join(DIR, f"in-{{role}}-{{os.getpid()}}"), "w").close()
        time.sleep(600)
    return fixed_model()
"""


def queued_study(store: Store, tmp_path: Path, build: str) -> str:
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    module = RENDEZVOUS.format(directory=str(meeting))
    path = write_tiny_study(tmp_path, extra_module=module, build=build, algorithm="grid", max_trials=2, max_epochs=2)
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts").record
    Coordinator(store, [study.name]).step(study, target_queued=2)
    assert len(store.trials(study.id)) == 2
    return study.name


def pids_in(directory: Path) -> list[int]:
    return [int(name.rsplit("-", 1)[1]) for name in os.listdir(directory) if name.startswith("in-")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_slots_run_two_trials_at_once_each_in_its_own_process(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url, create=True)
    name = queued_study(store, tmp_path, "build_together")
    group = SlotGroup(lambda: open_store(db_url), 2, WorkerOptions(study=name, idle_timeout=0, poll_seconds=0.1))
    assert group.run() == 2
    trials = store.trials(store.study(name).id)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 2, [t.error for t in trials]
    pids = pids_in(tmp_path / "meeting")
    assert len(set(pids)) == 2 and os.getpid() not in pids  # two processes, not this one
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(WorkerRow)).all()
    # One row per slot, both of this process, each with its backend; each slot ran one of the trials.
    assert len(rows) == 2 and {row.pid for row in rows} == {os.getpid()}
    assert {(row.backend, row.backend_version, row.state) for row in rows} == {
        ("tensorflow", metadata.version("tensorflow"), "STOPPED")
    }
    assert {t.worker_id for t in trials} == {row.id for row in rows}


def test_a_crashed_child_is_retried_and_its_neighbour_is_undisturbed(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url, create=True)
    name = queued_study(store, tmp_path, "build_one_crashes")
    SlotGroup(lambda: open_store(db_url), 2, WorkerOptions(study=name, idle_timeout=0, poll_seconds=0.1)).run()
    trials = {t.params["role"]: t for t in store.trials(store.study(name).id)}
    assert trials["crash"].state == TrialState.COMPLETED and trials["crash"].retries == 1, trials["crash"].error
    assert "SIGKILL" in (trials["crash"].error or "")
    assert trials["steady"].state == TrialState.COMPLETED and trials["steady"].retries == 0
    assert trials["steady"].error is None


def test_an_interrupt_stops_every_slot_and_hands_both_trials_back(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url, create=True)
    name = queued_study(store, tmp_path, "build_forever")
    meeting = tmp_path / "meeting"

    def interrupt_when_both_run() -> None:
        while len(pids_in(meeting)) < 2:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the main thread gets it

    threading.Thread(target=interrupt_when_both_run, daemon=True).start()
    group = SlotGroup(lambda: open_store(db_url), 2, WorkerOptions(study=name, idle_timeout=None, poll_seconds=0.1))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            group.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    trials = store.trials(store.study(name).id)
    assert [(t.state, t.retries) for t in trials] == [(TrialState.QUEUED, 0)] * 2  # back, uncharged
    with store.engine.connect() as connection:
        assert set(connection.scalars(sa.select(WorkerRow.state))) == {"STOPPED"}
    assert not any(alive(pid) for pid in pids_in(meeting))  # both children were ended


def test_every_worker_option_a_slot_group_passes_on_is_a_keyword_of_worker() -> None:
    """WorkerOptions is the one list of what the slots share: each field must be a Worker keyword."""
    keywords = inspect.signature(Worker).parameters
    assert all(keywords[f.name].kind is inspect.Parameter.KEYWORD_ONLY for f in dataclasses.fields(WorkerOptions))
