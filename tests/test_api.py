"""The Python API (hpsearch.create_study / load_study / Study) on SQLite and PostgreSQL, without training:
creation from a file, a dict and a StudySpec, the same study found again, functions turned into references,
state changes, reads and deletion. Running a study end to end is tests/examples/test_python_api.py."""

from __future__ import annotations

import os.path
import sys
from pathlib import Path

import pytest

import hpsearch
from hpsearch.errors import UsageError
from hpsearch.records import NewTrial
from hpsearch.references import reference
from hpsearch.store import Store, TrialState

from .conftest import write_tiny_study


def test_create_from_a_file_then_the_same_study_is_found_again(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path)
    study = hpsearch.create_study(path, store=store, artifacts=tmp_path / "artifacts")
    assert study.created and study.name == "tiny" and study.state == "RUNNING"
    again = hpsearch.create_study(path, store=store, artifacts=tmp_path / "artifacts")
    assert not again.created and again.record.id == study.record.id
    assert hpsearch.load_study("tiny", store=store).record.id == study.record.id


def test_a_dict_with_functions_is_a_study_whose_workers_import_them_by_reference(store: Store, tmp_path: Path) -> None:
    write_tiny_study(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        import tiny  # type: ignore[import-not-found]

        spec = {
            "study": {"name": "from_python", "objective": "val_accuracy"},
            "search": {"max_trials": 2, "max_epochs": 1},
        }
        study = hpsearch.create_study(
            spec, store=store, artifacts=tmp_path / "a", hypermodel=tiny.build_model, data=tiny.load_data
        )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tiny", None)
    stored = study.record.spec["study"]
    assert (stored["hypermodel"], stored["data"]) == ("tiny:build_model", "tiny:load_data")
    assert [p["config"]["name"] for p in study.record.space["space"]]  # discovered by building the model


def test_a_changed_spec_under_the_same_name_is_refused(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path)
    hpsearch.create_study(path, store=store, artifacts=tmp_path / "a")
    changed = write_tiny_study(tmp_path, max_trials=7)
    with pytest.raises(UsageError):
        hpsearch.create_study(changed, store=store, artifacts=tmp_path / "a")
    assert hpsearch.load_study("tiny", store=store).record.max_trials == 4


def test_stop_resume_reads_and_delete(store: Store, tmp_path: Path) -> None:
    study = hpsearch.create_study(write_tiny_study(tmp_path), store=store, artifacts=tmp_path / "a")
    study.stop("by a test")
    assert (study.state, study.record.message) == ("STOPPED", "by a test")
    study.resume()
    assert study.state == "RUNNING"

    record = study.record
    store.add_trials(record, [NewTrial({"units": 8}, budget_epochs=1), NewTrial({"units": 16}, budget_epochs=1)])
    worker = store.register_worker("w", "host", 1, None)
    for objective in (0.5, 0.75):
        claimed = store.claim(worker, record.id)
        assert claimed is not None
        store.record_epoch(claimed.trial_id, worker, 1, {"val_accuracy": objective}, "val_accuracy", "max")
        store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    assert [t.state for t in study.trials] == ["COMPLETED", "COMPLETED"]
    best = study.best_trial
    assert best is not None and (best.number, best.objective) == (1, 0.75)
    assert study.curve(1) == {1: {"val_accuracy": 0.75}}
    assert study.counts()["COMPLETED"] == 2
    frame = study.trials_dataframe()
    assert list(frame["number"]) == [0, 1] and list(frame["param_units"]) == [8, 16]

    folder = Path(study.record.artifact_root)  # the study's own directory under the artifact root
    assert folder.is_relative_to(tmp_path / "a")
    (folder / "tiny" / "trials").mkdir(parents=True, exist_ok=True)  # where its trials write
    study.delete(artifacts=True)
    assert not folder.exists() and (tmp_path / "a").exists()
    assert store.studies() == []
    with pytest.raises(UsageError):
        hpsearch.load_study("tiny", store=store)


def test_reference_names_module_functions_and_refuses_what_workers_cannot_import() -> None:
    assert reference(os.path.join) == "posixpath:join"
    assert reference("pkg.mod:fn") == "pkg.mod:fn"
    with pytest.raises(UsageError):
        reference(lambda hp: hp)
