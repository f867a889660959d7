"""What search() writes and refuses, and what a tuner refuses at construction (no training: fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hpsearch.keras_tuner as kt
from hpsearch.errors import UsageError
from hpsearch.keras_tuner.hypermodel import SearchHyperModel, open_arrays
from hpsearch.keras_tuner.oracle import clock, kt_objective, objectives_of
from hpsearch.keras_tuner.project import fit_arguments, split_arrays, write_arrays, write_hypermodel


def build(hp):  # type: ignore[no-untyped-def]
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hp.Int("units", 2, 4, step=2))])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")), loss="mse")
    return model


def test_validation_split_takes_the_last_rows_as_keras() -> None:
    x, y = np.arange(20, dtype="float32").reshape(10, 2), np.arange(10)
    splits = split_arrays({"x": x, "y": y, "validation_split": 0.3})
    assert list(splits["train"][1]) == list(range(7)) and list(splits["validation"][1]) == [7, 8, 9]


def test_without_validation_the_training_data_validates() -> None:
    x, y = np.zeros((4, 2)), np.zeros(4)
    splits = split_arrays({"x": x, "y": y})
    assert splits["validation"][1] is splits["train"][1]


def test_arrays_round_trip_memory_mapped(tmp_path: Path) -> None:
    x = {"a": np.ones((6, 2), "float32"), "b": np.zeros((6, 1), "float32")}
    fit = {"x": x, "y": np.arange(6), "sample_weight": np.ones(6), "validation_data": (x, np.arange(6))}
    write_arrays(split_arrays(fit), tmp_path)
    loaded = open_arrays(tmp_path)
    assert set(loaded["train"][0]) == {"a", "b"} and len(loaded["train"]) == 3 and len(loaded["validation"]) == 2
    assert isinstance(loaded["train"][1], np.memmap)


@pytest.mark.parametrize(
    "x",
    [
        pytest.param((i for i in range(3)), id="generator"),
        pytest.param(None, id="missing"),
    ],
)
def test_datasets_and_generators_are_refused_with_what_to_pass(x: object) -> None:
    with pytest.raises(UsageError, match="pass numpy arrays"):
        split_arrays({"x": x, "y": np.zeros(3)})


def test_tf_data_is_refused() -> None:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2)), np.zeros(4)))
    with pytest.raises(UsageError, match=r"tf\.data\.Dataset"):
        split_arrays({"x": dataset, "y": np.zeros(4)})


def test_positional_fit_arguments_are_named_as_model_fit() -> None:
    assert fit_arguments((1, 2, 32, 3), {"verbose": 0}) == {"x": 1, "y": 2, "batch_size": 32, "epochs": 3, "verbose": 0}
    with pytest.raises(UsageError, match="multiple values"):
        fit_arguments((1, 2, 32), {"batch_size": 8})


def test_the_pickled_hypermodel_loads_through_the_generated_module(tmp_path: Path) -> None:
    from hpsearch.execution.loading import load_hypermodel

    hypermodel_ref, data_ref = write_hypermodel(SearchHyperModel(build, {"batch_size": 8}), tmp_path)
    loaded = load_hypermodel(hypermodel_ref, tmp_path)
    assert isinstance(loaded, SearchHyperModel) and loaded.fit_kwargs == {"batch_size": 8}
    assert data_ref.endswith("hpsearch_loader.py:load_data")


def test_a_restricted_space_fixes_new_entries_at_their_default() -> None:
    hp = kt.HyperParameters()
    hp.Int("units", 2, 2)
    wrapped = SearchHyperModel(build, hyperparameters=hp.get_config(), tune_new_entries=False)
    trial_hp = kt.HyperParameters()
    wrapped.build(trial_hp)
    kinds = {p.name: type(p).__name__ for p in trial_hp.space}
    assert kinds == {"units": "Int", "lr": "Fixed"} and trial_hp.values["lr"] == 1e-3


def test_a_restricted_space_refuses_new_entries_when_told() -> None:
    hp = kt.HyperParameters()
    hp.Int("units", 2, 2)
    wrapped = SearchHyperModel(build, hyperparameters=hp.get_config(), allow_new_entries=False)
    with pytest.raises(RuntimeError, match="allow_new_entries"):
        wrapped.build(kt.HyperParameters())


def test_max_model_size_fails_the_trial_as_keras_tuner() -> None:
    with pytest.raises(kt.errors.FailedTrialError, match="max_model_size"):
        SearchHyperModel(build, max_model_size=1).build(kt.HyperParameters())


def test_objectives_as_keras_tuner_parses_them() -> None:
    assert objectives_of(kt_objective(None)) == [("val_loss", "min")]
    assert objectives_of(kt_objective(kt.Objective("val_f", "max"))) == [("val_f", "max")]
    assert clock(61) == "00h 01m 01s"


def test_unsupported_things_fail_at_construction_naming_the_alternative(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="optuna"):
        kt.SklearnTuner(oracle=None)
    with pytest.raises(UsageError, match="workers=N"):
        kt.RandomSearch(build, distribution_strategy=object(), directory=tmp_path)

    class Custom(kt.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):  # type: ignore[no-untyped-def]
            return 0.0

    with pytest.raises(UsageError, match=r"HyperModel\.fit"):
        Custom(build, directory=tmp_path)
    with pytest.raises(UsageError, match="hyperparameters="):
        kt.RandomSearch(build, tune_new_entries=False, directory=tmp_path)
    with pytest.raises(UsageError, match="unknown arguments"):
        kt.RandomSearch(build, max_trails=3, directory=tmp_path)
    assert issubclass(kt.GridSearch, kt.Tuner) and kt.HyperParameters is __import__("keras_tuner").HyperParameters


def test_search_space_summary_before_any_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tuner = kt.RandomSearch(build, objective="val_loss", directory=tmp_path, project_name="p")
    tuner.search_space_summary()
    out = capsys.readouterr().out
    assert "Default search space size: 2" in out and "units (Int)" in out
    assert tuner.get_best_hyperparameters() == [] and tuner.remaining_trials == 10
