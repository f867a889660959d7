"""What the reading commands print: bracket/rung/parent in `trials` for the multi-fidelity algorithms, the
attempts of a trial in `show`, and a confirmation line for a file export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpsearch.records import NewTrial
from hpsearch.store import Store, TrialState

from ..conftest import add_study
from .clirun import run_cli


def _text(out: str) -> str:
    """A rich table's text with its borders gone, one space between words."""
    return " ".join(out.translate(str.maketrans("│┃┏┓┗┛┡┩└┘━─╇╈┳┻┼╋", " " * 18)).split())


def _staged_study(store: Store) -> None:
    """Trial 0 in bracket 0, rung 0, run twice (its first attempt lost its lease); trial 1 continues it at
    rung 1, as Hyperband's promotions do."""
    study = add_study(store, "demo")
    store.add_trials(study, [NewTrial({"x": 0.5}, budget_epochs=1, bracket=0, rung=0)])
    worker = store.register_worker("node-1-4242", "node-1", 4242, None)
    first = store.claim(worker, study.id)
    assert first is not None
    store.retry(first.trial_id, worker, "lease expired (worker 1 lost)")
    second = store.claim(worker, study.id)
    assert second is not None and second.trial_id == first.trial_id
    store.record_epoch(second.trial_id, worker, 1, {"val_accuracy": 0.75, "loss": 0.5}, "val_accuracy", "max")
    assert store.finish(second.trial_id, worker, TrialState.COMPLETED)
    store.add_trials(
        study, [NewTrial({"x": 0.5}, budget_epochs=3, initial_epoch=1, parent_number=0, bracket=0, rung=1)]
    )


def test_trials_show_bracket_rung_and_parent(store: Store, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _staged_study(store)
    code, out, err = run_cli(["trials", "demo", "--db", db_url, "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["number"], r["bracket"], r["rung"], r["parent"]) for r in rows] == [(0, 0, 0, None), (1, 0, 1, 0)]
    code, out, err = run_cli(["trials", "demo", "--db", db_url], capsys)
    text = _text(out)
    assert "bracket rung parent" in text
    assert "1 QUEUED - - 0 0 1 0" in text  # number, state, objective, best epoch, epochs, bracket, rung, parent
    # A study without brackets shows no such columns.
    other = add_study(store, "flat")
    store.add_trials(other, [NewTrial({"x": 0.1}, budget_epochs=1)])
    code, out, err = run_cli(["trials", "flat", "--db", db_url], capsys)
    assert code == 0 and "bracket" not in out and "rung" not in out


def test_show_lists_the_attempts(store: Store, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _staged_study(store)
    code, out, err = run_cli(["show", "demo", "0", "--db", db_url, "--json"], capsys)
    assert code == 0, err
    attempts = json.loads(out)["attempts"]
    assert [(a["attempt"], a["worker"], a["start_epoch"]) for a in attempts] == [
        (1, "node-1-4242", 0),
        (2, "node-1-4242", 0),
    ]
    assert attempts[0]["outcome"] != attempts[1]["outcome"] == "COMPLETED"
    assert all(a["started_at"] and a["ended_at"] for a in attempts)
    code, out, err = run_cli(["show", "demo", "0", "--db", db_url], capsys)
    text = _text(out)
    assert "attempts" in text and "attempt worker from epoch started (UTC) ended (UTC) outcome" in text
    assert text.count("node-1-4242") == 2


def test_a_file_export_says_what_it_wrote(
    store: Store, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _staged_study(store)
    target = tmp_path / "trials.csv"
    code, out, err = run_cli(["export", "demo", "--db", db_url, "-o", str(target)], capsys)
    assert code == 0, err
    assert out.strip() == f"wrote 2 trials of demo to {target} (csv)"
    assert len(target.read_text().strip().splitlines()) == 3  # header and two trials
    metrics = ["export", "demo", "--db", db_url, "--metrics", "-o", str(tmp_path / "m.json"), "--format", "json"]
    code, out, err = run_cli(metrics, capsys)
    assert code == 0, err
    assert out.strip() == f"wrote 2 metric rows of demo to {tmp_path / 'm.json'} (json)"
    code, out, err = run_cli(["export", "demo", "--db", db_url], capsys)  # standard output: the data alone
    assert code == 0 and not out.startswith("wrote") and out.count("\n") == 3


def test_report_says_the_absolute_path_it_wrote(
    store: Store, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _staged_study(store)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["report", "demo", "--db", db_url, "-o", "page.html"], capsys)
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path.resolve() / 'page.html'}" and (tmp_path / "page.html").is_file()
