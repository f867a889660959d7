from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpsearch.errors import SpecError
from hpsearch.spec import infer_direction, load_spec, validate_spec

VALID = """
[study]
name = "s1"
hypermodel = "m.py:build_model"
data = "m.py:load_data"
objective = "val_accuracy"

[search]
max_trials = 3
max_epochs = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_valid_file_loads_with_defaults_and_inferred_direction(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, VALID))
    assert spec.study.objective.direction == "max"
    assert spec.search.algorithm == "random"
    assert spec.run.workers == 2
    assert spec.fit.batch_size is None


def test_explicit_objective_table(tmp_path: Path) -> None:
    text = VALID.replace('objective = "val_accuracy"', 'objective = { name = "val_thing", direction = "min" }')
    assert load_spec(write(tmp_path, text)).study.objective.direction == "min"


@pytest.mark.parametrize(
    ("metric", "direction"),
    [("val_loss", "min"), ("val_mae", "min"), ("accuracy", "max"), ("val_auc", "max"), ("val_f1_score", "max")],
)
def test_direction_inferred_like_keras_tuner(metric: str, direction: str) -> None:
    assert infer_direction(metric) == direction


@pytest.mark.parametrize(
    ("edit", "where", "what"),
    [
        (lambda t: t + "\n[oops\n", "study.toml", "invalid TOML"),
        (lambda t: t.replace("max_epochs = 2", "max_epochs = 2\nmax_epoch = 3"), "search.max_epoch", "unknown field"),
        (lambda t: t.replace("max_trials = 3", 'max_trials = "3"'), "search.max_trials", "'3'"),
        (lambda t: t.replace("max_trials = 3", "max_trials = 0"), "search.max_trials", "greater than 0"),
        (lambda t: t + '\n[space.lr]\ntype = "float"\nmin = 0.1\nmax = 0.01\n', "space.lr", "inverted"),
        (lambda t: t + '\n[space.lr]\ntype = "float"\nmin = 0.0\nmax = 0.01\nsampling = "log"\n', "space.lr", "log"),
        (lambda t: t + '\n[space.act]\ntype = "choice"\nvalues = []\n', "space.act.values", "at least 1"),
        (lambda t: t.replace('objective = "val_accuracy"', 'objective = "val_widgets"'), "study.objective", "infer"),
        (lambda t: t.replace('name = "s1"', 'name = "../etc"'), "study.name", "letters"),
        (lambda t: t.replace('"m.py:load_data"', '"m.py"'), "study.data", "file.py:function"),
        (lambda t: t.replace("[search]", '[search]\nalgorithm = "annealing"'), "search.algorithm", "annealing"),
        (lambda t: t.replace("[search]", "[search]\nmodel_window = 500"), "search", "'model_window' does not apply"),
        (
            lambda t: t.replace("[search]", '[search]\nalgorithm = "tpe"\nmodel_window = 5'),
            "search.model_window",
            "greater than or equal to 25",
        ),
    ],
)
def test_bad_files_name_file_field_and_value(tmp_path: Path, edit, where: str, what: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, edit(VALID))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert str(path) in message
    assert where in message
    assert what in message
    assert "\n" not in message


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such study file"):
        load_spec(tmp_path / "absent.toml")


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["study", "search", "fit", "run", "space", "other"]),
        st.dictionaries(
            st.sampled_from(["name", "hypermodel", "data", "objective", "max_trials", "max_epochs", "workers", "x"]),
            toml_values,
            max_size=6,
        )
        | toml_values,
        max_size=6,
    )
)
def test_any_document_loads_or_raises_spec_error(document: dict) -> None:  # type: ignore[type-arg]
    try:
        validate_spec(document, "fuzz.toml")
    except SpecError as exc:
        assert str(exc).startswith("fuzz.toml")


def test_options_of_another_algorithm_are_refused_and_stored_specs_reload(tmp_path: Path) -> None:
    text = VALID.replace("[search]", '[search]\nalgorithm = "random"\nfactor = 4')
    with pytest.raises(SpecError, match="option 'factor' does not apply to algorithm 'random'"):
        load_spec(write(tmp_path, text))
    hyperband = VALID.replace("max_trials = 3\n", "").replace(
        "[search]", '[search]\nalgorithm = "hyperband"\nfactor = 4'
    )
    spec = load_spec(write(tmp_path, hyperband))
    assert (spec.search.factor, spec.search.max_trials) == (4, None)
    assert validate_spec(spec.model_dump(mode="json"), "stored") == spec
    with pytest.raises(SpecError, match="max_trials is required for algorithm 'tpe'"):
        load_spec(
            write(tmp_path, VALID.replace("max_trials = 3\n", "").replace("[search]", '[search]\nalgorithm = "tpe"'))
        )


def test_several_objectives(tmp_path: Path) -> None:
    text = VALID.replace(
        'objective = "val_accuracy"', 'objective = ["val_accuracy", { name = "num_params", direction = "min" }]'
    )
    spec = load_spec(write(tmp_path, text))
    assert [(o.name, o.direction) for o in spec.study.objectives] == [("val_accuracy", "max"), ("num_params", "min")]
    with pytest.raises(SpecError, match="names an objective twice"):
        load_spec(write(tmp_path, VALID.replace('objective = "val_accuracy"', 'objective = ["val_loss", "val_loss"]')))


# Lines of a valid study file, and lines that break it in the ways people do: any mix of them (and of random
# text) is either a valid study or one SpecError, never another exception.
TOML_LINES = [
    *VALID.strip().splitlines(),
    "[space.lr]",
    "[space.units]",
    "[fit]",
    "[run]",
    "[study]",
    'type = "float"',
    'type = "int"',
    'type = "choice"',
    'type = "fixed"',
    'type = "banana"',
    "min = 0.0",
    "min = -1",
    "max = 1e308",
    "max = inf",
    "min = nan",
    "step = 0",
    'sampling = "log"',
    "values = []",
    'values = [1, "a", true]',
    "value = 3",
    'algorithm = "hyperband"',
    'algorithm = "asha"',
    "factor = 1",
    'sampler = "tpe"',
    "min_epochs = 5",
    'max_wall_time = "2h"',
    'trial_timeout = "-1s"',
    "batch_size = -3",
    'callbacks = [{ name = "EarlyStopping", patience = 2 }]',
    "callbacks = [{}]",
    "class_weight = { 0 = 1.0, x = -2 }",
    "workers = 0",
    "heartbeat_seconds = 100",
    'objective = ["val_loss", { name = "num_params" }]',
    "objective = []",
    'name = "../x"',
    'name = "a\\u0000b"',
    "max_trials = 99999999999999999999",
    "x = { y = { z = [[]] } }",
    "[[search]]",
    "[study.objective]",
]


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(st.sampled_from(TOML_LINES) | st.text(max_size=12), max_size=25))
def test_any_toml_text_loads_or_raises_spec_error(
    tmp_path_factory: pytest.TempPathFactory, from_valid: bool, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "study.toml"
    path.write_text((VALID if from_valid else "") + "\n".join(lines), encoding="utf-8")
    try:
        spec = load_spec(path)
    except SpecError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in exc.where
    else:
        assert validate_spec(spec.model_dump(mode="json"), "stored") == spec
