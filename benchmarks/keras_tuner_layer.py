"""The same 10-trial RandomSearch through ``keras_tuner`` and through ``hpsearch.keras_tuner`` in one run: wall
time, best score and per-trial overhead (wall time minus the time spent inside trials, per trial).

Run: ``python benchmarks/keras_tuner_layer.py [--trials 10] [--epochs 3] [--workers 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np


def build_model(hp):  # type: ignore[no-untyped-def]
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(hp.Int("units", 16, 128, step=16), activation="relu"),
            keras.layers.Dropout(hp.Float("dropout", 0.0, 0.4)),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def data() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 20)).astype("float32")
    y = (x[:, :5].sum(axis=1) + 0.5 * rng.normal(size=4000) > 0).astype("float32")
    return x[:3000], y[:3000], x[3000:], y[3000:]


def run(kt: object, directory: Path, trials: int, epochs: int, workers: int) -> dict[str, float]:
    x, y, x_val, y_val = data()
    extra = {"workers": workers} if kt.__name__.startswith("hpsearch") else {}  # type: ignore[attr-defined]
    tuner = kt.RandomSearch(  # type: ignore[attr-defined]
        build_model,
        objective="val_accuracy",
        max_trials=trials,
        seed=1,
        directory=str(directory),
        project_name="bench",
        overwrite=True,
        **extra,
    )
    started = time.perf_counter()
    tuner.search(x, y, epochs=epochs, batch_size=64, validation_data=(x_val, y_val), verbose=0)
    wall = time.perf_counter() - started
    done = tuner.oracle.get_best_trials(trials)
    inside = _trial_seconds(tuner)
    return {
        "wall_s": round(wall, 1),
        "best_val_accuracy": round(float(done[0].score), 4),
        "trials": len(done),
        "trial_s_sum": round(inside, 1),
        "overhead_per_trial_s": round((wall - inside / max(workers, 1)) / trials, 2),
    }


def _trial_seconds(tuner: object) -> float:
    """Seconds spent training (hpsearch: the trials' durations; Keras Tuner: not recorded, so its trials' time is
    measured by the callback below)."""
    study = getattr(tuner, "study", None)
    if study is not None:
        return float(sum(t.duration_seconds or 0.0 for t in study.trials))
    return _KT_TRAINING[0]


_KT_TRAINING = [0.0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    import keras_tuner

    import hpsearch.keras_tuner as hkt

    # Keras Tuner keeps no per-trial duration: time its run_trial.
    original = keras_tuner.RandomSearch.run_trial

    def timed(self, trial, *a, **k):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return original(self, trial, *a, **k)
        finally:
            _KT_TRAINING[0] += time.perf_counter() - started

    keras_tuner.RandomSearch.run_trial = timed
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["keras_tuner"] = run(keras_tuner, Path(tmp) / "kt", args.trials, args.epochs, 1)
        results["hpsearch.keras_tuner"] = run(hkt, Path(tmp) / "hp", args.trials, args.epochs, args.workers)
    print(json.dumps({"trials": args.trials, "epochs": args.epochs, "workers": args.workers, **results}, indent=2))


if __name__ == "__main__":
    main()
