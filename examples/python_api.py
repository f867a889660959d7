"""The Python API end to end: a hypermodel and data defined in this script, a study run by 2 local workers,
the best trial printed and promoted into an evaluated, exported final model.

    python examples/python_api.py [--db URL] [--trials N]

Workers import this file to find ``build_model`` and ``load_data`` (by path, as ``multiprocessing`` does), so
the work happens under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import hpsearch


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """sklearn's 8x8 digits (ships with scikit-learn): 70% train, 15% validation, 15% test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = (x[order] / 16.0).astype("float32"), y[order].astype("int64")
    a, b = int(0.70 * len(x)), int(0.85 * len(x))
    return {"train": (x[:a], y[:a]), "validation": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


def build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(hp.Int("units", 16, 128, step=16), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    lr = hp.Float("lr", 1e-4, 1e-2, sampling="log")
    model.compile(keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:///python_api.db")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--artifacts", default="hpsearch-artifacts")
    args = parser.parse_args()

    # The tables of a study file, as a dict (or a hpsearch.StudySpec); the functions above are passed as objects.
    spec = {
        "study": {"name": "digits_python_api", "objective": "val_accuracy", "seed": 7},
        "search": {"algorithm": "tpe", "max_trials": args.trials, "max_epochs": 3, "n_startup_trials": 3},
        "fit": {"batch_size": 64},
        "promote": {"epochs": 3, "patience": 2, "formats": ["keras"]},
    }
    study = hpsearch.create_study(spec, db=args.db, artifacts=args.artifacts, hypermodel=build_model, data=load_data)
    study.run(workers=2)
    best = study.best_trial
    assert best is not None
    print(f"best trial {best.number}: val_accuracy = {best.objective:.4f}, params {best.params}")
    job = study.promote()
    print(f"final model: {job.state}, test metrics {job.test_metrics}")


if __name__ == "__main__":
    main()
