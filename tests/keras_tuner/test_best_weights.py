"""Keras Tuner's best-epoch weights are named by the trial's attempt (kt-best-a<k>.weights.h5): a worker frozen
past its lease writes only its own attempt's file, and a resumed attempt starts from the best of the earlier
attempts' files, so the completing attempt's file holds the best epoch of the whole trial."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from hpsearch.keras_tuner.hypermodel import BEST_WEIGHTS, _SaveBest


def model(value: float) -> keras.Model:
    """A one-weight model whose weight is ``value`` (so a file's weights say which epoch wrote it)."""
    built = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    built.layers[0].kernel.assign(np.full((1, 1), value, dtype="float32"))
    return built


def saver(directory: Path, attempt: int, weights: float) -> _SaveBest:
    callback = _SaveBest("val_accuracy", "max", directory, attempt)
    callback.set_model(model(weights))
    return callback


def saved_weight(path: Path) -> float:
    loaded = model(0.0)
    loaded.load_weights(path)
    return float(loaded.layers[0].kernel.numpy()[0, 0])


def test_a_resumed_attempt_keeps_the_earlier_best_and_a_stale_one_writes_only_its_own_file(tmp_path: Path) -> None:
    first = saver(tmp_path, 1, 1.0)
    first.on_train_begin()
    first.on_epoch_end(0, {"val_accuracy": 0.9})  # attempt 1's best epoch: weight 1.0
    second = saver(tmp_path, 2, 2.0)
    second.on_train_begin()  # resumed after attempt 1 lost its lease
    second.on_epoch_end(1, {"val_accuracy": 0.5})  # worse than attempt 1's: not saved
    own = tmp_path / BEST_WEIGHTS.format(attempt=2)
    assert saved_weight(own) == 1.0 and json.loads((tmp_path / "kt-best-a2.json").read_text()) == {"value": 0.9}

    first.model.layers[0].kernel.assign(np.full((1, 1), 7.0, dtype="float32"))
    first.on_epoch_end(1, {"val_accuracy": 0.99})  # the stale attempt wakes and saves a better epoch of its own
    assert saved_weight(tmp_path / BEST_WEIGHTS.format(attempt=1)) == 7.0
    assert saved_weight(own) == 1.0  # the owner's file is untouched

    second.model.layers[0].kernel.assign(np.full((1, 1), 3.0, dtype="float32"))
    second.on_epoch_end(2, {"val_accuracy": 0.95})
    assert saved_weight(own) == 3.0
