"""Run in fresh processes by tests/test_automl.py, as two workers: build a trial's model (and save it), or
first reload the saved .keras model (before anything imports autokeras) and then build the same trial."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np


def run(mode: str, directory: str) -> dict[str, Any]:
    import keras

    from tests.execution.test_automl import structured_data

    data = structured_data()
    path = Path(directory) / "model.keras"
    raw = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in data["test"][0].items()}
    result: dict[str, Any] = {}
    if mode == "reload-then-build":
        model = keras.models.load_model(path)
        result["reloaded_predictions"] = model.predict(raw, verbose=0).tolist()
        result["autokeras_imported"] = "autokeras" in sys.modules

    import keras_tuner as kt

    from hpsearch.execution.loading import keras_inputs
    from tests.execution.test_automl import hypermodel_for

    keras.utils.set_random_seed(0)
    hp = kt.HyperParameters()
    hp.Fixed("structured_data_block_1/normalize", True)
    model = hypermodel_for("structured_data_classifier", data).build(hp)
    lookup = next(layer for layer in model.layers if isinstance(layer, keras.layers.StringLookup))
    normalization = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    result["preprocessing"] = {
        "vocabulary": lookup.get_vocabulary(),
        "mean": np.asarray(normalization.mean).reshape(-1).tolist(),
        "variance": np.asarray(normalization.variance).reshape(-1).tolist(),
    }
    if mode == "build-and-save":
        model.fit(keras_inputs(data["train"][0]), data["train"][1], epochs=1, verbose=0)
        model.save(path)
        result["predictions"] = model.predict(raw, verbose=0).tolist()
    return result
