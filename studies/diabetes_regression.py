"""MLP regressor on sklearn's diabetes data; features standardised with train statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

SEED = 42
TARGET_SCALE = 100.0  # targets range 25..346; predict y / 100 so MAE reads in hundreds


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True, scaled=False)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.30, random_state=SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.50, random_state=SEED)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)

    def prep(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ((xs - mean) / std).astype("float32"), (ys / TARGET_SCALE).astype("float32")

    return {
        "train": prep(x_train, y_train),
        "validation": prep(x_val, y_val),
        "test": prep(x_test, y_test),
    }


def build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential([keras.Input(shape=(10,))])
    for i in range(hp.Int("layers", 1, 3)):
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 16, 128, step=16), activation="relu"))
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):
            model.add(keras.layers.Dropout(hp.Float("dropout_rate", 0.1, 0.4)))
    model.add(keras.layers.Dense(1))
    lr = hp.Float("lr", min_value=5e-4, max_value=2e-2, sampling="log", default=3e-3)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="mse", metrics=["mae"])
    return model
