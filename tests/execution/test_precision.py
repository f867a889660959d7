"""[fit] mixed_precision and jit_compile reach the trial's process: the policy is set before the model is
built, jit_compile is the default of the hypermodel's compile (its own value wins), and the trial completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.errors import SpecError
from hpsearch.execution.worker import Worker
from hpsearch.spec import validate_spec
from hpsearch.store import TrialState, open_store

from ..conftest import write_tiny_study

pytestmark = pytest.mark.slow

# Written in by the test: where each trial's process reports what its model got.
REPORTING = '''

REPORT = {report!r}


def build_reporting(hp):
    import keras

    role = hp.Choice("role", ["ours", "theirs"])
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if role == "ours":
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    else:
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"], jit_compile=True)
    policy = keras.mixed_precision.global_policy().name
    with open(REPORT, "a") as handle:
        handle.write(f"{{role}} {{policy}} {{model.layers[0].compute_dtype}} {{model.jit_compile}}\\n")
    return model
'''


def test_mixed_precision_and_jit_compile_are_set_in_the_trial(db_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    module = REPORTING.format(report=str(report))
    path = write_tiny_study(tmp_path, extra_module=module, build="build_reporting", algorithm="grid", max_trials=2)
    path.write_text(path.read_text().replace("[fit]", "[fit]\nmixed_precision = true\njit_compile = false"))
    store = open_store(db_url, create=True)
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts").record
    report.unlink()  # discovery built the model here, in the test's process: only the trials' lines count
    Coordinator(store, [study.name]).step(study, target_queued=2)
    assert Worker(store, study=study.name, idle_timeout=0, poll_seconds=0.1).run() == 2
    trials = store.trials(study.id)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 2, [t.error for t in trials]
    assert all(t.objective is not None for t in trials)
    lines = sorted(report.read_text().split("\n")[:-1])
    # Float16 compute in both; jit_compile false where the hypermodel's compile left it unset, its own True kept.
    assert lines == ["ours mixed_float16 float16 False", "theirs mixed_float16 float16 True"]


def test_fit_options_are_validated() -> None:
    base = {
        "study": {"name": "s", "hypermodel": "m.py:build", "data": "m.py:load", "objective": "val_loss"},
        "search": {"max_trials": 1, "max_epochs": 1},
    }
    spec = validate_spec({**base, "fit": {"mixed_precision": True, "jit_compile": False}}, "s.toml")
    assert spec.fit.mixed_precision and spec.fit.jit_compile is False
    assert validate_spec(base, "s.toml").fit.jit_compile is None
    with pytest.raises(SpecError) as caught:
        validate_spec({**base, "fit": {"mixed_precision": "yes"}}, "s.toml")
    assert "fit.mixed_precision" in str(caught.value)
