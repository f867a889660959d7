"""`hpsearch status` says when a RUNNING study waits for a coordinator and workers (after `study create`, or
a killed `hpsearch run`), rather than suggesting that something runs it."""

from __future__ import annotations

import json

import pytest

from hpsearch.store import Store, StudyState

from ..conftest import add_study
from .clirun import run_cli


def _status(db_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, object]]:
    code, out, err = run_cli(["status", "--db", db_url], capsys)
    assert code == 0, err
    code, as_json, err = run_cli(["status", "--db", db_url, "--json"], capsys)
    assert code == 0, err
    return out, json.loads(as_json)[0]


def test_status_says_what_a_running_study_waits_for(
    store: Store, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study = add_study(store, "demo")
    text, row = _status(db_url, capsys)
    assert row["state"] == "RUNNING" and row["waiting_for"] == ["coordinator", "workers"]
    assert "(waiting)" in text
    assert (
        "study demo waits: no coordinator and no worker is running; start `hpsearch run STUDY_FILE` here, "
        "or `hpsearch coordinator` and `hpsearch worker` processes (any machine with --db)"
    ) in text

    worker = store.register_worker("node-1-1", "node-1", 1, None)
    store.worker_alive(worker, "IDLE")
    text, row = _status(db_url, capsys)
    assert row["waiting_for"] == ["coordinator"]
    assert "no coordinator is running" in text and "`hpsearch coordinator` processes" in text

    assert store.hold_coordinator_lease(study.id, "coordinator-1", 60.0)
    text, row = _status(db_url, capsys)
    assert row["waiting_for"] == [] and "waits" not in text and "(waiting)" not in text

    store.worker_stopped(worker)
    text, row = _status(db_url, capsys)
    assert row["waiting_for"] == ["workers"] and "no worker is running" in text

    store.set_study_state(study.id, StudyState.STOPPED)
    text, row = _status(db_url, capsys)
    assert row["waiting_for"] == [] and "waits" not in text
