"""Growing a study's budget (`hpsearch study extend`) and naming what differs in a refused study file."""

from __future__ import annotations

import dataclasses

import pytest

from hpsearch.errors import UsageError
from hpsearch.store import NewStudy, StudyState
from hpsearch.store.studies import spec_differences

from ..conftest import add_study


def test_extend_raises_the_budget_and_reopens_a_completed_study(store) -> None:  # type: ignore[no-untyped-def]
    study = add_study(store)
    store.set_study_state(study.id, StudyState.COMPLETED)
    extended = store.extend_study(study.id, max_trials=1200, max_wall_time=3600.0)
    assert extended.max_trials == 1200
    assert extended.spec["search"]["max_trials"] == 1200 and extended.spec["search"]["max_wall_time"] == 3600.0
    assert extended.state == StudyState.STOPPED  # `hpsearch run` continues it; nothing claims it runs meanwhile
    with pytest.raises(UsageError, match="is 1200; extend it beyond that"):
        store.extend_study(study.id, max_trials=1000)
    assert store.study_by_id(study.id).max_trials == 1200


def test_a_changed_study_file_is_refused_naming_the_fields(store) -> None:  # type: ignore[no-untyped-def]
    study = add_study(store)
    row = NewStudy(**{f.name: getattr(study, f.name) for f in dataclasses.fields(NewStudy)})
    changed = dataclasses.replace(row, spec={**study.spec, "run": {"lease_seconds": 5.0, "heartbeat_seconds": 2.0}})
    with pytest.raises(UsageError, match=r"differs in run.heartbeat_seconds, run.lease_seconds\)"):
        store.create_study(changed)


def test_a_budget_extended_past_the_file_is_no_difference() -> None:
    stored = {"search": {"max_trials": 20, "max_wall_time": 600.0, "seed": 1}}
    assert spec_differences(stored, {"search": {"max_trials": 10, "seed": 1}}) == []
    assert spec_differences(stored, {"search": {"max_trials": 30, "seed": 1}}) == ["search.max_trials"]
    assert spec_differences({"a": [1, 2]}, {"a": [1, 3], "b": 1}) == ["a", "b"]
