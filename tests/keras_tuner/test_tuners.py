"""Every public name of hpsearch.keras_tuner against a database, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hpsearch.keras_tuner as kt
from hpsearch import api

pytestmark = pytest.mark.slow


def build(hp):  # type: ignore[no-untyped-def]
    import keras

    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(hp.Int("units", 2, 6, step=2)), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(hp.Choice("lr", [0.01, 0.05])), loss="mse", metrics=["mae"])
    return model


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    return x, x.sum(axis=1)


def test_search_results_and_reload(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = data()
    tuner = kt.RandomSearch(
        build,
        objective="val_mae",
        max_trials=2,
        executions_per_trial=2,
        directory=tmp_path,
        project_name="p",
        db=db_url,
        workers=1,
        overwrite=True,
    )
    tuner.search(x, y, epochs=2, validation_split=0.25, batch_size=16)
    out = capsys.readouterr().out
    assert "Trial 2/2 Complete" in out and "Best val_mae So Far" in out and "Total elapsed time" in out
    trials = tuner.oracle.trials
    assert sorted(trials) == ["0", "1"] and all(t.status == "COMPLETED" for t in trials.values())
    best = tuner.oracle.get_best_trials(2)
    assert best[0].score <= best[1].score
    assert best[0].metrics.get_best_value("val_mae") == best[0].score
    assert [o.step for o in best[0].metrics.get_history("val_mae")] == [0, 1]
    assert best[0].best_step in (0, 1)
    assert tuner.oracle.get_trial(best[0].trial_id).hyperparameters.values == best[0].hyperparameters.values
    assert tuner.get_best_hyperparameters(1)[0].values == best[0].hyperparameters.values
    model = tuner.get_best_models(1)[0]
    assert model.count_params() > 0
    study = tuner.study
    assert study is not None and study.state == "COMPLETED" and study.name == "p"
    # The best epoch's weights were saved beside the checkpoint, and they are what get_best_models loaded.
    weights = Path(study.record.artifact_root) / "p" / "trials" / best[0].trial_id / "kt-best-a1.weights.h5"
    assert weights.is_file()
    tuner.results_summary(1)
    assert f"Trial {best[0].trial_id} summary" in capsys.readouterr().out
    tuner.search_space_summary()
    assert "Default search space size: 2" in capsys.readouterr().out
    # overwrite=False continues: nothing runs again; overwrite=True starts afresh.
    again = kt.RandomSearch(
        build,
        objective="val_mae",
        max_trials=2,
        executions_per_trial=2,
        directory=tmp_path,
        project_name="p",
        db=db_url,
        workers=1,
    )
    again.search(x, y, epochs=2, validation_split=0.25, batch_size=16)
    assert len(again.oracle.trials) == 2 and again.remaining_trials == 0
    fresh = kt.RandomSearch(
        build,
        objective="val_mae",
        max_trials=1,
        directory=tmp_path,
        project_name="p",
        db=db_url,
        workers=1,
        overwrite=True,
    )
    assert fresh.oracle.trials == {}


@pytest.mark.parametrize(
    ("tuner", "arguments", "search"),
    [
        (kt.GridSearch, {}, {"algorithm": "grid", "max_epochs": 1}),
        (kt.BayesianOptimization, {"num_initial_points": 2}, {"algorithm": "bayesian", "n_startup_trials": 2}),
        (kt.TPE, {"max_trials": 4}, {"algorithm": "tpe", "max_trials": 4}),
        (kt.Hyperband, {"max_epochs": 9, "factor": 3}, {"algorithm": "hyperband", "max_epochs": 9, "factor": 3}),
        (kt.BOHB, {"max_epochs": 9}, {"algorithm": "bohb", "max_epochs": 9, "hyperband_iterations": 1}),
        (kt.ASHA, {"max_trials": 6, "max_epochs": 9}, {"algorithm": "asha", "max_trials": 6, "min_epochs": 1}),
    ],
)
def test_each_tuner_creates_its_algorithm_study(
    tuner: type[kt.Tuner], arguments: dict[str, object], search: dict[str, object], db_url: str, tmp_path: Path
) -> None:
    instance = tuner(build, objective="val_loss", directory=tmp_path, project_name="q", db=db_url, **arguments)
    spec = instance._spec(1)
    assert search.items() <= spec["search"].items(), spec["search"]
    assert spec["study"]["objective"] == {"name": "val_loss", "direction": "min"}
    # The spec validates as a study (the registry accepts each algorithm's options).
    from hpsearch.spec import validate_spec

    validate_spec({**spec, "study": {**spec["study"], "hypermodel": "m.py:h", "data": "m.py:d"}}, "test")


def test_grid_search_runs_every_combination(db_url: str, tmp_path: Path) -> None:
    x, y = data()
    hp = kt.HyperParameters()
    hp.Choice("units", [2, 4])
    tuner = kt.GridSearch(
        build,
        objective=kt.Objective("val_loss", "min"),
        hyperparameters=hp,
        tune_new_entries=False,
        directory=tmp_path,
        db=db_url,
        workers=1,
    )
    tuner.search(x, y, validation_data=(x, y), verbose=0)
    values = sorted(t.hyperparameters.values["units"] for t in tuner.oracle.trials.values())
    assert values == [2, 4] and {t.hyperparameters.values["lr"] for t in tuner.oracle.trials.values()} == {0.01}


def test_workers_zero_with_two_separate_workers(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("the notebook-to-cluster path needs a shared database (PostgreSQL)")
    x, y = data()
    tuner = kt.RandomSearch(
        build, objective="val_loss", max_trials=3, directory=tmp_path, project_name="cluster", db=db_url, workers=0
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HPSEARCH_DB": db_url}
    command = [sys.executable, "-m", "hpsearch", "worker", "--study", "cluster", "--exit-when-done"]
    workers: list[subprocess.Popen[bytes]] = []

    def start_workers_once_the_study_exists() -> None:
        store_url = db_url
        for _ in range(600):
            try:
                api.load_study("cluster", db=store_url)
                break
            except Exception:
                time.sleep(0.5)
        workers.extend(subprocess.Popen(command, env=env, cwd=tmp_path) for _ in range(2))

    starter = threading.Thread(target=start_workers_once_the_study_exists)
    starter.start()
    try:
        tuner.search(x, y, epochs=1, validation_split=0.25, verbose=0)
    except Exception:
        study = tuner.study
        raise AssertionError([t.error for t in study.trials] if study else "no study") from None
    finally:
        starter.join()
        for worker in workers:
            worker.wait(timeout=300)
    assert len(tuner.oracle.get_best_trials(5)) == 3
    assert all(worker.returncode == 0 for worker in workers)
    status = subprocess.run([sys.executable, "-m", "hpsearch", "status"], env=env, capture_output=True, text=True)
    assert "cluster" in status.stdout
    # The analysts' view of the same study: the report a study file's study gets.
    page = tmp_path / "report.html"
    report = subprocess.run(
        [sys.executable, "-m", "hpsearch", "report", "cluster", "-o", str(page)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    text = page.read_text()
    assert "cluster" in text and "Plotly.newPlot" in text
