"""The MNIST-5k MLP of studies/mnist_mlp.py as a HyperModel that logs when it builds and trains, for
worker_overhead.py. Each event is one JSON line appended to $HPSEARCH_BENCH_TIMINGS (wall-clock seconds)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))

from mnist_mlp import build_model, load_data

__all__ = ["TimedMLP", "load_data"]


def log_event(event: str, **fields: Any) -> None:
    with open(os.environ["HPSEARCH_BENCH_TIMINGS"], "a") as handle:
        handle.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}) + "\n")


class _Timer(keras.callbacks.Callback):
    """First in the callback list: its epoch end is logged before any checkpoint or report is written, and
    the next epoch's begin after them (the gap is the per-epoch checkpoint and report)."""

    def on_train_begin(self, logs: Any = None) -> None:
        log_event("train_begin")

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        log_event("epoch_begin", epoch=epoch + 1)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        log_event("epoch_end", epoch=epoch + 1)


class TimedMLP(kt.HyperModel):
    def build(self, hp: Any) -> Any:
        log_event("build_start")
        model = build_model(hp)
        log_event("build_end")
        return model

    def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [_Timer(), *kwargs.get("callbacks", [])]
        log_event("fit_start")
        history = model.fit(*args, **kwargs)
        log_event("fit_end")
        return history
