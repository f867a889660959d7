"""An ``algorithm = "auto"`` study in the database (SQLite and PostgreSQL): its row records the pick and why,
once; `hpsearch status` and the Python API show it; a coordinator restarted any number of times builds the
recorded pick and plans the same schedule as one that never stopped, even if the rule changed meanwhile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpsearch.api import Study
from hpsearch.control.studies import insert_study, study_row, study_search
from hpsearch.spec import validate_spec
from hpsearch.store import Store
from hpsearch.store.db import make_engine, upgrade
from hpsearch.strategies import auto
from hpsearch.strategies.schedulers import Hyperband

from ..cli.clirun import run_cli
from ..conftest import UNIT_X_SPACE
from ..control.simulated_worker import Schedule, train_to_the_end


def _spec(run_workers: int, **search: Any) -> Any:
    return validate_spec(
        {
            "study": {"name": "auto", "hypermodel": "m.py:build", "data": "m.py:load", "objective": "val_accuracy"},
            "search": {"algorithm": "auto", "max_epochs": 9, **search},
            "run": {"workers": run_workers},
        },
        "auto.toml",
    )


def _create(store: Store, tmp_path: Path, run_workers: int, **search: Any) -> tuple[Any, bool]:
    row = study_row(_spec(run_workers, **search), tmp_path / "auto.toml", UNIT_X_SPACE, tmp_path / "artifacts")
    return insert_study(store, row)


def test_the_row_records_the_pick_and_why_once(store: Store, tmp_path: Path) -> None:
    # max_epochs 9, one sweep = 75 epochs: 8.3 full trainings for 1 worker (bohb), 0.5 for 16 (asha+tpe).
    record, created = _create(store, tmp_path, 1)
    assert created
    assert record.algorithm == "auto: bohb"
    assert record.algorithm_choice["algorithm"] == "bohb"
    assert record.algorithm_choice["reason"].startswith("auto -> bohb: 1 worker, budget one Hyperband sweep")
    assert record.spec["search"]["algorithm"] == "auto"  # the stored study file is the user's
    assert record.max_trials == Hyperband(3).total_trials(9)
    assert study_search(store.study("auto"))["algorithm"] == "bohb"
    # The same study file again is the same study; its recorded pick stays even if the rule changed since.
    saved = auto.DEPTH_BOHB
    auto.DEPTH_BOHB = 1000.0  # the rule of a later version would pick asha+tpe
    try:
        assert study_row(_spec(1), tmp_path / "auto.toml", UNIT_X_SPACE, tmp_path / "a").algorithm == "auto: asha+tpe"
        again, created = _create(store, tmp_path, 1)
    finally:
        auto.DEPTH_BOHB = saved
    assert not created and again.id == record.id
    assert store.study("auto").algorithm_choice == record.algorithm_choice


def test_the_worker_count_comes_from_search_workers_before_run_workers(store: Store, tmp_path: Path) -> None:
    record, _ = _create(store, tmp_path, 1, workers=16)  # [run] workers 1, [search] workers 16
    assert record.algorithm == "auto: asha+tpe"
    assert "16 workers" in record.algorithm_choice["reason"]
    assert record.max_trials == 33  # configurations: 75 epochs / (1 + 2/3 + 6/9) each
    assert study_search(store.study("auto"))["sampler"] == "tpe"


def test_status_and_the_api_show_the_pick(
    store: Store, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record, _ = _create(store, tmp_path, 16)
    code, text, err = run_cli(["status", "--db", db_url], capsys)
    assert code == 0, err
    assert "auto: asha+tpe" in text
    assert "study auto: algorithm auto -> asha+tpe: 16 workers" in text
    code, as_json, err = run_cli(["status", "--db", db_url, "--json"], capsys)
    assert code == 0, err
    row = json.loads(as_json)[0]
    assert row["algorithm"] == "auto: asha+tpe"
    assert row["algorithm_reason"] == record.algorithm_choice["reason"]
    assert Study(store, "auto").algorithm_reason == record.algorithm_choice["reason"]


def _train(url: str, tmp_path: Path, workers: int, restart_every: int | None, flip_rule_at: int | None) -> Schedule:
    """One simulated worker trains the auto study's trials; with ``restart_every`` the coordinator (and its
    connection) is replaced that often; from step ``flip_rule_at`` on the rule would pick the other algorithm."""
    store = Store(make_engine(url))
    study, _ = _create(store, tmp_path, workers)

    def flip_rule(step: int) -> None:
        if flip_rule_at is not None and step == flip_rule_at:  # a rule that would pick the other algorithm
            auto.DEPTH_BOHB = 1000.0 if workers == 1 else 0.0

    saved = auto.DEPTH_BOHB
    try:
        return train_to_the_end(store, url, study.id, restart_every, before_step=flip_rule)
    finally:
        auto.DEPTH_BOHB = saved


@pytest.mark.parametrize(("workers", "restart_every"), [(1, 3), (16, 2)])
def test_a_restarted_coordinator_plans_the_recorded_pick_on_from_the_database(
    db_url: str, workers: int, restart_every: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    reference_url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'ref.db'}"
    for url in (reference_url, db_url):
        upgrade(make_engine(url))
    reference = _train(reference_url, tmp_path_factory.mktemp("a"), workers, None, None)
    if workers == 1:  # bohb: Keras Tuner's Hyperband brackets, one sweep
        assert len(reference) == Hyperband(3).total_trials(9)
        assert len({row[1] for row in reference}) == Hyperband(3).num_brackets(9)
    else:  # asha+tpe: one bracket, 33 configurations at rung 0, promotions with parents
        assert {row[1] for row in reference} == {0}
        assert sum(row[2] == 0 for row in reference) == 33
        assert {row[2] for row in reference} == {0, 1, 2}
    # Restarted every few steps, and with the rule flipped mid-study: the same schedule, trial by trial.
    restarted = _train(db_url, tmp_path_factory.mktemp("b"), workers, restart_every, flip_rule_at=5)
    assert restarted == reference
