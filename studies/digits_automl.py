"""sklearn's 8x8 digits as raw images (pixel values 0-16, no scaling: the model normalizes them itself)."""

from __future__ import annotations

import numpy as np

SEED = 42


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype("float32")  # (n, 8, 8): AutoKeras adds the channel axis inside the model
    y = digits.target.astype("int64")
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.30, stratify=y, random_state=SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.50, stratify=y_rest, random_state=SEED)
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}
