"""AutoKeras 3.0.0 on keras >= 3.13: numpy integers never reach a keras layer (Dense requires a Python int)."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np

from hpsearch.execution.automl import python_scalars

from .test_automl import hypermodel_for, structured_data


def test_python_scalars_converts_numpy_scalars_and_leaves_the_rest() -> None:
    assert python_scalars(np.int64(3)) == 3 and type(python_scalars(np.int64(3))) is int
    assert python_scalars((np.int32(2), np.float32(0.5), "x")) == (2, 0.5, "x")
    assert python_scalars([1, "a"]) == [1, "a"]
    assert python_scalars(None) is None


def test_numpy_integer_hyperparameters_and_head_sizes_build_a_model() -> None:
    hypermodel = hypermodel_for("structured_data_classifier", structured_data())
    head = hypermodel.heads[0]
    head.num_classes, head.loss = np.int64(3), None  # as a user's ClassificationHead(num_classes=np.int64(3))
    hypermodel._configure(1, 32)
    hp = kt.HyperParameters()
    hp.values.update(
        {
            "structured_data_block_1/dense_block_1/num_layers": np.int64(2),
            "structured_data_block_1/dense_block_1/units_0": np.int64(32),
            "structured_data_block_1/dense_block_1/units_1": np.int64(64),
        }
    )
    model = hypermodel.build(hp)
    units = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert units == [32, 64, 3]
    assert all(type(u) is int for u in units)
