"""AutoML studies: AutoKeras tasks as hypermodels whose models hold their fitted preprocessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpsearch.errors import SpecError, UsageError, UserCodeError
from hpsearch.execution.discovery import discover_space
from hpsearch.execution.hypermodels import study_hypermodel
from hpsearch.execution.loading import check_model, keras_inputs, validate_dataset
from hpsearch.space import SearchSpace
from hpsearch.spec import validate_spec
from hpsearch.strategies.base import StudyContext, TrialView
from hpsearch.strategies.samplers import RandomSampler, SeededSampler

from ..conftest import REPO

SRC = str(REPO / "src")


def structured_data(n: int = 120, seed: int = 0) -> dict[str, tuple[Any, Any]]:
    """A raw table: a string column that decides the label, a numeric one with an offset, and noise."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], size=n)
    size = rng.normal(50.0, 10.0, size=n).astype("float32")
    y = (colour == "red").astype("int64")
    x = {"colour": colour.astype(str), "size": size}
    cut = [int(n * 0.6), int(n * 0.8)]
    return {
        split: ({k: v[a:b] for k, v in x.items()}, y[a:b])
        for split, (a, b) in {"train": (0, cut[0]), "validation": (cut[0], cut[1]), "test": (cut[1], n)}.items()
    }


def image_data(n: int = 90) -> dict[str, tuple[Any, Any]]:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 16, size=(n, 8, 8)).astype("float32")
    y = (np.arange(n) % 3).astype("int64")
    return {"train": (x[:60], y[:60]), "validation": (x[60:75], y[60:75]), "test": (x[75:], y[75:])}


def text_data() -> dict[str, tuple[Any, Any]]:
    words = [["alpha beta", "beta gamma alpha"], ["delta epsilon", "epsilon zeta delta delta"]]
    texts = [words[i % 2][i % 4 // 2] + f" w{i % 5}" for i in range(60)]
    y = (np.arange(60) % 2).astype("int64")
    x = np.array(texts)
    return {"train": (x[:40], y[:40]), "validation": (x[40:50], y[40:50]), "test": (x[50:], y[50:])}


def spec_for(automl: dict[str, Any], space: dict[str, Any] | None = None, **search: Any) -> Any:
    return validate_spec(
        {
            "study": {"name": "t", "data": "d.py:load_data", "objective": "val_accuracy"},
            "search": {"max_trials": 2, "max_epochs": 1, **search},
            "automl": automl,
            "space": space or {},
        },
        "t.toml",
    )


def hypermodel_for(task: str, data: dict[str, Any], **automl: Any) -> Any:
    space = automl.pop("space", None)
    return study_hypermodel(spec_for({"task": task, **automl}, space), ".", validate_dataset(data, "d.py:load_data"))


def layers_of(model: Any, cls: type) -> list[Any]:
    return [layer for layer in model.layers if isinstance(layer, cls)]


def test_space_is_autokeras_own_and_its_known_good_configuration_comes_first() -> None:
    from autokeras.tuners import task_specific

    from hpsearch.execution.automl import fit_initial_trials, initial_hps

    hypermodel = hypermodel_for("structured_data_classifier", structured_data())
    space = discover_space(hypermodel, "t", check=check_model)
    names = [e["config"]["name"] for e in space["space"]]
    assert {"structured_data_block_1/normalize", "structured_data_block_1/dense_block_1/num_layers"} <= set(names)
    assert {"classification_head_1/dropout", "optimizer", "learning_rate"} <= set(names)
    # Units of every layer up to the block's maximum depth are found before the first trial.
    assert "structured_data_block_1/dense_block_1/units_2" in names

    seeds = fit_initial_trials(initial_hps("structured_data_classifier"), SearchSpace(space))
    assert len(seeds) == 1
    assert task_specific.STRUCTURED_DATA_CLASSIFIER[0].items() <= seeds[0].items()
    assert set(seeds[0]) <= set(names)


def test_initial_configurations_outside_a_narrowed_space_are_left_out() -> None:
    from hpsearch.execution.automl import fit_initial_trials

    space = SearchSpace(
        {
            "space": [
                {"class_name": "Choice", "config": {"name": "kind", "values": ["a"], "default": "a", "conditions": []}},
                {"class_name": "Boolean", "config": {"name": "flag", "default": False, "conditions": []}},
            ]
        }
    )
    seeds = [{"kind": "a", "flag": True}, {"kind": "b"}, {"kind": "a", "unknown": 1}, {"kind": "a"}]
    assert fit_initial_trials(seeds, space) == [{"kind": "a", "flag": True}, {"kind": "a", "flag": False}]


def test_seeded_sampler_proposes_the_given_sets_first_and_once() -> None:
    space = SearchSpace(
        {"space": [{"class_name": "Int", "config": {"name": "u", "min_value": 1, "max_value": 50, "conditions": []}}]}
    )
    context = StudyContext(space, "max", 3, 10, 2)
    sampler = SeededSampler(RandomSampler(), [{"u": 7}, {"u": 9}])
    first = sampler.sample(context, [], 3)
    assert first[:2] == [{"u": 7}, {"u": 9}]
    assert len(first) == 3 and first[2] not in first[:2]

    # A seed counts as tried once a trial's params include it (a worker may report more parameters).
    done = TrialView(0, "COMPLETED", {"u": 7, "later": 1}, 0.5, 1, 2, 2)
    assert sampler.sample(context, [done], 1) == [{"u": 9}]


def test_structured_model_encodes_raw_columns_fitted_on_the_training_split() -> None:
    import keras
    import keras_tuner as kt

    data = structured_data()
    hypermodel = hypermodel_for("structured_data_classifier", data)
    hp = kt.HyperParameters()
    hp.Fixed("structured_data_block_1/normalize", True)
    model = hypermodel.build(hp)
    check_model(model, "t")

    (lookup,) = layers_of(model, keras.layers.StringLookup)
    train_colours = list(data["train"][0]["colour"])
    counts = {c: train_colours.count(c) for c in set(train_colours)}
    # Most frequent first, ties by value: the same vocabulary on every worker.
    assert lookup.get_vocabulary()[1:] == sorted(counts, key=lambda c: (-counts[c], c))

    (normalization,) = layers_of(model, keras.layers.Normalization)
    mean = np.asarray(normalization.mean).reshape(-1)
    # Adapted on the encoded training split: the last feature is `size` (one-hot colour columns come first).
    assert mean[-1] == pytest.approx(float(np.mean(data["train"][0]["size"])), rel=1e-4)

    probabilities = model.predict(keras_inputs(data["test"][0]), verbose=0)
    assert probabilities.shape == (len(data["test"][1]), 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_image_model_takes_raw_8x8_arrays_and_normalizes_itself() -> None:
    import keras
    import keras_tuner as kt

    data = image_data()
    hypermodel = hypermodel_for(
        "image_classifier", data, space={"image_block_1/block_type": {"type": "choice", "values": ["vanilla"]}}
    )
    hp = kt.HyperParameters()
    hp.Fixed("image_block_1/normalize", True)
    model = hypermodel.build(hp)
    assert tuple(model.input_shape) == (None, 8, 8)
    assert hp.values["image_block_1/block_type"] == "vanilla"
    (normalization,) = layers_of(model, keras.layers.Normalization)
    assert float(np.asarray(normalization.mean).reshape(-1)[0]) == pytest.approx(float(data["train"][0].mean()), 1e-4)
    assert model.predict(data["test"][0], verbose=0).shape == (15, 3)


def test_text_model_takes_raw_strings() -> None:
    import keras
    import keras_tuner as kt

    data = text_data()
    model = hypermodel_for("text_classifier", data).build(kt.HyperParameters())
    (vectorize,) = layers_of(model, keras.layers.TextVectorization)
    vocabulary = vectorize.get_vocabulary()
    assert {"alpha", "beta", "delta", "w0"} <= set(vocabulary)
    assert "unseen" not in vocabulary
    assert model.predict(keras_inputs(np.array(["alpha beta unseen"])), verbose=0).shape == (1, 1)


def test_oversized_models_fail_and_a_space_of_only_oversized_models_is_refused() -> None:
    import keras_tuner as kt

    hypermodel = hypermodel_for("structured_data_classifier", structured_data(), max_model_size=50)
    with pytest.raises(kt.errors.FailedTrialError, match="Oversized model"):
        hypermodel.build(kt.HyperParameters())
    with pytest.raises(UserCodeError, match="no configuration could be built"):
        discover_space(hypermodel, "automl.task structured_data_classifier", check=check_model)


def test_classification_targets_must_be_class_indices() -> None:
    data = structured_data()
    data["train"] = (data["train"][0], data["train"][1].astype("float32") + 0.5)
    with pytest.raises(UserCodeError, match="integer class indices"):
        hypermodel_for("structured_data_classifier", data)


@pytest.mark.parametrize(
    ("automl", "study_extra", "field", "message"),
    [
        ({"task": "image_classifier", "automodel": "m.py:f"}, {}, "automl", "exactly one of task or automodel"),
        ({}, {}, "automl", "exactly one of task or automodel"),
        ({"task": "video_classifier"}, {}, "automl.task", "video_classifier"),
        ({"task": "image_classifier", "max_model_size": 0}, {}, "automl.max_model_size", "greater than 0"),
        ({"automodel": "no-function"}, {}, "automl.automodel", "file.py:function"),
        ({"task": "image_classifier"}, {"hypermodel": "m.py:build"}, "study.hypermodel", "has no hypermodel"),
        (None, {}, "study.hypermodel", "required field is missing"),
    ],
)
def test_spec_errors(automl: Any, study_extra: dict[str, Any], field: str, message: str) -> None:
    data: dict[str, Any] = {
        "study": {"name": "t", "data": "d.py:load_data", "objective": "val_accuracy", **study_extra},
        "search": {"max_trials": 2, "max_epochs": 1},
    }
    if automl is not None:
        data["automl"] = automl
    with pytest.raises(SpecError) as info:
        validate_spec(data, "t.toml")
    assert info.value.where == f"t.toml: {field}"
    assert message in info.value.what


STRUCTURED_MODULE = """
import numpy as np


def load_data():
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], size=120).astype(str)
    size = rng.normal(50.0, 10.0, size=120).astype("float32")
    y = (colour == "red").astype("int64")
    x = {"colour": colour, "size": size}
    parts = {"train": (0, 80), "validation": (80, 100), "test": (100, 120)}
    return {k: ({c: v[a:b] for c, v in x.items()}, y[a:b]) for k, (a, b) in parts.items()}


def automodel():
    import autokeras as ak
    import tempfile

    inputs = ak.StructuredDataInput()
    outputs = ak.ClassificationHead(dropout=0.0)(ak.DenseBlock(num_layers=1)(inputs))
    return ak.AutoModel(inputs=inputs, outputs=outputs, directory=tempfile.mkdtemp(), overwrite=True)
"""


def write_automl_study(directory: Path, automl: str, search: str = "") -> Path:
    (directory / "raw.py").write_text(STRUCTURED_MODULE)
    path = directory / "raw.toml"
    path.write_text(
        f"""
[study]
name = "raw"
data = "raw.py:load_data"
objective = "val_accuracy"
seed = 3

[automl]
{automl}

[search]
algorithm = "random"
max_trials = 2
max_epochs = 1
{search}
"""
    )
    return path


def _study_row(path: Path, root: Path) -> Any:
    from hpsearch.control.studies import study_row
    from hpsearch.execution.discovery import discover
    from hpsearch.spec import load_spec

    found = discover(load_spec(path), path)
    return study_row(found.spec, path, found.space, root)


def test_a_users_automodel_is_a_hypermodel_too(tmp_path: Path) -> None:
    path = write_automl_study(tmp_path, 'automodel = "raw.py:automodel"')
    row = _study_row(path, tmp_path / "art")
    names = [e["config"]["name"] for e in row.space["space"]]
    assert "dense_block_1/units_0" in names and "dense_block_1/num_layers" not in names
    assert row.spec["search"]["initial_trials"] == []  # AutoKeras has none for a custom AutoModel


def test_initial_trials_naming_unknown_parameters_are_refused(tmp_path: Path) -> None:
    path = write_automl_study(tmp_path, 'task = "structured_data_classifier"', 'initial_trials = [{ "no/such" = 1 }]')
    with pytest.raises(SpecError) as info:
        _study_row(path, tmp_path / "art")
    assert info.value.where.endswith("search.initial_trials.0.no/such")


FRESH_PROCESS = """
import json, sys
import numpy as np
sys.path.insert(0, {src!r})
sys.path.insert(0, {repo!r})
from tests.automl_fresh import run
print(json.dumps(run(sys.argv[1], sys.argv[2])))
"""


@pytest.mark.slow  # two fresh processes that import autokeras: among the suite's longest
def test_preprocessing_is_the_same_on_every_worker_and_the_saved_model_reloads_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    """Two fresh processes (two workers) build the same trial: identical preprocessing. The second first loads
    the model the first saved, before importing autokeras, and predicts the same on raw inputs."""
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS.format(src=SRC, repo=str(REPO)))

    def fresh(mode: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, str(script), mode, str(tmp_path)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    first = fresh("build-and-save")
    second = fresh("reload-then-build")
    assert first["preprocessing"] == second["preprocessing"]
    assert first["preprocessing"]["vocabulary"] and first["preprocessing"]["mean"]
    assert not second["autokeras_imported"]
    np.testing.assert_allclose(second["reloaded_predictions"], first["predictions"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_automl_command_runs_a_csv_study_seeded_with_autokeras_configuration(tmp_path: Path, db_url: str) -> None:
    import pandas as pd
    import sqlalchemy as sa
    from autokeras.tuners import task_specific

    x, y = structured_data(n=150)["train"]
    frame = pd.DataFrame({"colour": x["colour"], "size": x["size"], "label": np.where(y == 1, "yes", "no")})
    frame.to_csv(tmp_path / "table.csv", index=False)
    command = [
        sys.executable,
        "-m",
        "hpsearch",
        "automl",
        "table.csv",
        "--task",
        "structured_data_classifier",
        "--target",
        "label",
        "--time-limit",
        "4m",
        "--max-trials",
        "2",
        "--max-epochs",
        "1",
        "--workers",
        "1",
        "--db",
        db_url,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "hpsearch-automl" / "table_structured_data_classifier.toml").is_file()

    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT number, state, params FROM trials ORDER BY number")).all()
    engine.dispose()
    assert [(r.number, r.state) for r in rows] == [(0, "COMPLETED"), (1, "COMPLETED")]
    first = rows[0].params if isinstance(rows[0].params, dict) else json.loads(rows[0].params)
    assert task_specific.STRUCTURED_DATA_CLASSIFIER[0].items() <= first.items()

    # Promotion retrains the best trial; its .keras model holds the preprocessing, so a fresh process that never
    # imports autokeras predicts from the raw columns what the final job predicted.
    env = {**os.environ, "HPSEARCH_DB": db_url}
    promoted = subprocess.run(
        [sys.executable, "-m", "hpsearch", "promote", "table_structured_data_classifier", "--local", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    job = json.loads(promoted.stdout)
    exports = {a["kind"]: a["uri"] for a in job["artifacts"]}
    assert job["state"] == "COMPLETED" and {"keras", "model_card", "predictions"} <= set(exports)
    reload = subprocess.run(
        [sys.executable, "-c", RAW_RELOAD, exports["keras"], str(tmp_path / "hpsearch-automl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reload.returncode == 0, reload.stderr[-3000:]
    found = json.loads(reload.stdout.strip().splitlines()[-1])
    assert not found["autokeras_imported"]
    np.testing.assert_allclose(found["predictions"], np.load(exports["predictions"]), rtol=1e-5, atol=1e-6)


RAW_RELOAD = """
import json, sys
import keras
from hpsearch.execution.loading import keras_inputs, load_dataset
model = keras.models.load_model(sys.argv[1])
test = load_dataset("table_structured_data_classifier_data.py:load_data", sys.argv[2])["test"]
predictions = model.predict(keras_inputs(test.x), verbose=0)
print(json.dumps({"predictions": predictions.tolist(), "autokeras_imported": "autokeras" in sys.modules}))
"""


def test_automl_command_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    from hpsearch.execution.automl_data import write_study

    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="--task"):
        write_study(tmp_path / "t.csv", "video", target="b", time_limit=60, out_dir=tmp_path)
    with pytest.raises(UsageError, match="target column"):
        write_study(tmp_path / "t.csv", "structured_data_classifier", target=None, time_limit=60, out_dir=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "hpsearch", "automl", "missing.csv", "--task", "image_classifier"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: missing.csv: no such data file"]
    assert not (tmp_path / "hpsearch.db").exists()


def test_csv_tables_are_split_by_seed_and_labels_become_class_indices(tmp_path: Path) -> None:
    from hpsearch.execution.automl_data import load_table

    pd = pytest.importorskip("pandas")
    n = 40
    frame = pd.DataFrame(
        {
            "Passenger class": ["1st", "2nd"] * (n // 2),
            "fare": [float(i) if i % 7 else None for i in range(n)],
            "survived": ["yes", "no", "no", "yes"] * (n // 4),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    splits = load_table(str(tmp_path / "t.csv"), "structured_data_classifier", target="survived", seed=1)
    again = load_table(str(tmp_path / "t.csv"), "structured_data_classifier", target="survived", seed=1)
    assert [len(splits[s][1]) for s in ("train", "validation", "test")] == [28, 6, 6]
    np.testing.assert_array_equal(splits["test"][0]["fare"], again["test"][0]["fare"])
    assert set(splits["train"][0]) == {"Passenger_class", "fare"}
    assert splits["train"][0]["Passenger_class"].dtype.kind == "U"
    assert not np.isnan(np.concatenate([splits[s][0]["fare"] for s in splits])).any()
    assert set(np.concatenate([splits[s][1] for s in splits])) == {0, 1}  # "no" -> 0, "yes" -> 1
    validate_dataset(splits, "t.csv")
