"""The user's fit wins: hpsearch never passes an argument a hypermodel's ``fit`` sets itself, fills in only what
the user's ``model.fit`` call leaves unset, and merges its callbacks into the call's list."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from hpsearch.errors import SpecError
from hpsearch.execution.fitting import fit_hypermodel, fit_keywords

from ..conftest import write_tiny_study


class FakeModel:
    """Records each ``fit`` call with keras.Model.fit's parameters."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: Any = "auto",
        callbacks: list[Any] | None = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        class_weight: Any = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
    ) -> str:
        call = dict(locals())
        del call["self"]
        self.calls.append(call)
        return "history"


class FakeHp:
    def Boolean(self, name: str) -> bool:
        return False

    def Choice(self, name: str, values: list[Any]) -> Any:
        return values[-1]


class Guide:
    """Keras Tuner's "Getting started" HyperModel.fit, tuning batch_size too."""

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        return model.fit(*args, shuffle=hp.Boolean("shuffle"), batch_size=hp.Choice("batch_size", [16, 64]), **kwargs)


class OwnsTraining:
    """A fit that sets epochs, validation data, callbacks and verbosity itself."""

    def fit(self, hp: Any, model: Any, x: Any, y: Any, **kwargs: Any) -> Any:
        return model.fit(x, y, epochs=5, validation_data=("vx", "vy"), callbacks=["mine"], verbose=1, **kwargs)


def test_the_guides_fit_gets_its_own_shuffle_and_batch_size() -> None:
    model = FakeModel()
    passed = {"epochs": 3, "batch_size": 32, "shuffle": False, "validation_data": ("vx", "vy"), "callbacks": ["ours"]}
    assert fit_keywords(Guide()) == {"shuffle", "batch_size"}
    result = fit_hypermodel(Guide(), FakeHp(), model, "x", "y", passed=passed, added={"verbose": 0, "initial_epoch": 2})
    assert result == "history" and "fit" not in vars(model)  # the model's own fit is back
    [call] = model.calls
    assert (call["shuffle"], call["batch_size"]) == (False, 64)  # the fit's values, not [fit]'s
    assert (call["x"], call["y"], call["epochs"], call["validation_data"]) == ("x", "y", 3, ("vx", "vy"))
    assert (call["callbacks"], call["verbose"], call["initial_epoch"]) == (["ours"], 0, 2)


def test_a_fit_setting_epochs_validation_data_callbacks_and_verbose_keeps_them_and_gets_our_callbacks() -> None:
    model = FakeModel()
    passed = {"epochs": 3, "validation_data": ("x2", "y2"), "callbacks": ["reporter"]}
    fit_hypermodel(OwnsTraining(), FakeHp(), model, "x", "y", passed=passed, added={"verbose": 0, "initial_epoch": 1})
    [call] = model.calls
    assert (call["epochs"], call["validation_data"], call["verbose"]) == (5, ("vx", "vy"), 1)
    assert call["callbacks"] == ["mine", "reporter"] and call["initial_epoch"] == 1


def test_without_source_a_collision_is_retried_with_the_users_value_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace: dict[str, Any] = {}
    exec(  # a class defined where inspect finds no source, as in some consoles
        "class Hidden:\n"
        "    def fit(self, hp, model, *args, **kwargs):\n"
        "        return model.fit(*args, shuffle=True, **kwargs)\n",
        namespace,
    )
    hypermodel = namespace["Hidden"]()
    assert fit_keywords(hypermodel) is None
    model = FakeModel()
    with caplog.at_level(logging.WARNING, logger="hpsearch.execution.fitting"):
        fit_hypermodel(hypermodel, FakeHp(), model, "x", "y", passed={"shuffle": False, "epochs": 2}, added={})
    assert [call["shuffle"] for call in model.calls] == [True]
    assert "its fit sets shuffle itself; [fit] shuffle = False is not used" in caplog.text


def test_a_collision_after_training_started_is_not_retried() -> None:
    class TrainsTwice:
        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            model.fit(*args)
            extra = {"epochs": 9}
            return model.fit(*args, **extra, **kwargs)  # collides only at run time

    model = FakeModel()
    with pytest.raises(TypeError, match="multiple values for keyword argument 'epochs'"):
        fit_hypermodel(TrainsTwice(), FakeHp(), model, "x", "y", passed={"epochs": 2}, added={})
    assert len(model.calls) == 1


GUIDE = '''

import keras_tuner


class Guide(keras_tuner.HyperModel):
    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, shuffle=hp.Boolean("shuffle"), batch_size=hp.Choice("batch_size", [16, 32]), **kwargs)
'''


def test_a_fit_key_the_hypermodels_fit_also_sets_is_refused_at_study_creation(tmp_path: Path) -> None:
    from hpsearch.execution.discovery import discover
    from hpsearch.spec import load_spec

    path = write_tiny_study(tmp_path, extra_module=GUIDE, build="Guide")  # its [fit] sets batch_size = 32
    with pytest.raises(SpecError) as info:
        discover(load_spec(path), path)
    assert info.value.where == f"{path}: fit.batch_size"
    assert info.value.what == "the hypermodel's fit (tiny.py:Guide) sets batch_size itself; remove it from [fit]"
    path.write_text(path.read_text().replace("batch_size = 32\n", ""))
    assert discover(load_spec(path), path).space["space"]
