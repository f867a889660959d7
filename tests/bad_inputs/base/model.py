"""The hypermodels and data loaders of the bad-input corpus: one good pair, and one broken variant per case."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import keras
import numpy as np


def load_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    return {"train": (x[:80], y[:80]), "validation": (x[80:], y[80:])}


def build_model(hp):
    model = keras.Sequential([keras.Input((4,))])
    model.add(keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"))
    model.add(keras.layers.Dense(2, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def in_trial_process() -> bool:
    """Discovery builds in the calling process; a fault meant for the trial's child waits for it."""
    return multiprocessing.current_process().name != "MainProcess"


# --- hypermodels -------------------------------------------------------------------------------------------

NOT_CALLABLE = 42


def build_not_a_model(hp):
    return "a model"


def build_uncompiled(hp):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])


def build_raises(hp):
    raise ValueError("bad layer size")


def build_missing_parent(hp):
    with hp.conditional_scope("use_dropout", [True]):  # "use_dropout" is never declared
        hp.Float("rate", 0.1, 0.5)
    return build_model(hp)


def build_two_types(hp):
    hp.Choice("units", ["small", "large"])
    return build_model(hp)


def _hypermodel_class():
    import keras_tuner as kt

    class Broken(kt.HyperModel):
        def __init__(self):
            raise RuntimeError("no config file")

        def build(self, hp):
            return build_model(hp)

    return Broken


BrokenHyperModel = _hypermodel_class()


def build_nan(hp):
    model = build_model(hp)
    model.compile(optimizer="sgd", loss=lambda y, p: p[:, 0] * float("nan"), metrics=["accuracy"])
    return model


def build_oom_killed(hp):
    if in_trial_process():
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    return build_model(hp)


def build_memory_error(hp):
    if in_trial_process():
        raise MemoryError("cannot allocate 80 GiB for the embedding")
    return build_model(hp)


def build_slow(hp):
    if in_trial_process():
        time.sleep(60)
    return build_model(hp)


class Explodes(keras.callbacks.Callback):
    """A fit callback (fit.callbacks) that fails in the middle of training."""

    def on_epoch_end(self, epoch, logs=None):
        raise RuntimeError("metric server unreachable")


# --- data loaders ------------------------------------------------------------------------------------------


def _with(split, x=None, y=None):
    data = load_data()
    old_x, old_y = data[split]
    data[split] = (old_x if x is None else x, old_y if y is None else y)
    return data


def data_mismatched():
    _, y = load_data()["train"]
    return _with("train", y=y[:-3])


def data_labels_out_of_range():
    _, y = load_data()["train"]
    return _with("train", y=y + 1)  # classes 1 and 2 for a model with outputs 0 and 1


def data_negative_labels():
    _, y = load_data()["validation"]
    return _with("validation", y=y - 1)


def data_nan_inputs():
    x, _ = load_data()["train"]
    x = x.copy()
    x[5, 2] = np.nan
    return _with("train", x=x)


def data_inf_labels():
    _, y = load_data()["validation"]
    return _with("validation", y=np.where(y == 1, np.inf, 0.0))


def data_empty_split():
    x, y = load_data()["validation"]
    return _with("validation", x=x[:0], y=y[:0])


def data_split_shapes_differ():
    x, _ = load_data()["validation"]
    return _with("validation", x=x[:, :3])


def data_wrong_input_shape():
    data = load_data()
    return {name: (np.concatenate([x, x[:, :1]], axis=1), y) for name, (x, y) in data.items()}


def data_tuple():
    data = load_data()
    return data["train"], data["validation"]


def data_no_validation():
    return {"train": load_data()["train"]}


def data_raises():
    raise FileNotFoundError("/data/mnist.npz")


def data_strings():
    x, _ = load_data()["train"]
    return _with("train", x=np.full(x.shape, "0.5"))
