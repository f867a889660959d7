"""Small CNN on sklearn's 8x8 digits; every hyperparameter is discrete (grid of 8)."""

from __future__ import annotations

from typing import Any

import numpy as np

SEED = 42


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., np.newaxis]  # (n, 8, 8, 1)
    y = digits.target.astype("int64")
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.30, stratify=y, random_state=SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.50, stratify=y_rest, random_state=SEED)
    return {
        "train": (x_train, y_train),
        "validation": (x_val, y_val),
        "test": (x_test, y_test),
    }


def build_model(hp: Any) -> Any:
    import keras

    # Grid: filters {16, 32} x second_block {False, True} x lr {1e-3, 1e-2} = 8 combos.
    filters = hp.Int("filters", min_value=16, max_value=32, step=16)
    kernel = hp.Choice("kernel_size", [3])
    model = keras.Sequential([keras.Input(shape=(8, 8, 1))])
    model.add(keras.layers.Conv2D(filters, kernel, padding="same", activation="relu"))
    if hp.Boolean("second_block"):
        model.add(keras.layers.Conv2D(filters, kernel, padding="same", activation="relu"))
    model.add(keras.layers.MaxPooling2D())
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(64, activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    lr = hp.Float("lr", min_value=1e-3, max_value=1e-2, step=10, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
