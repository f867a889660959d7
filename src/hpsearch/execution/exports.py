"""The final model's exports on every Keras backend, each verified by reloading it and predicting the test split.

What each backend makes (Keras 3.15): ``.keras`` on all three; SavedModel (``model.export(format=
"tf_saved_model")``) on tensorflow and on jax (through jax2tf), not on torch; ONNX through tf2onnx on tensorflow,
jax2onnx on jax (the ``jax`` extra) and torch.onnx with onnxscript on torch (the ``torch`` extra).

An export counts only if a fresh load of it predicts the test split within tolerance at the test split's own
batch size (a graph that only accepts batch 1 is not an export); anything else is removed and its reason goes
to the model card's ``skipped_exports``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from hpsearch.execution.loading import Inputs, keras_inputs

# float32 graphs run by another runtime (oneDNN, XLA, onnxruntime) differ in the last bits.
RTOL, ATOL = 1e-3, 1e-4
# The software a model card names, when installed: the backend's own packages and the exporters.
PACKAGES = (
    "hpsearch",
    "keras",
    "tensorflow",
    "jax",
    "jaxlib",
    "torch",
    "keras-tuner",
    "numpy",
    "scikit-learn",
    "onnx",
    "onnxruntime",
    "tf2onnx",
    "jax2onnx",
    "onnxscript",
)
BACKEND_PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def backend_info() -> dict[str, str | None]:
    """The Keras backend this process runs and its version.

    >>> backend_info()  # doctest: +SKIP
    {'name': 'jax', 'version': '0.10.2'}
    """
    name = keras.backend.backend()
    return {"name": name, "version": _version(BACKEND_PACKAGE.get(name, name))}


def software_versions() -> dict[str, str]:
    """Python, the Keras backend and the installed versions of :data:`PACKAGES` (the model card's ``software``).

    >>> software_versions()["keras_backend"]  # doctest: +SKIP
    'torch'
    """
    versions = {"python": platform.python_version(), "keras_backend": keras.backend.backend()}
    for package in PACKAGES:
        version = _version(package)
        if version is not None:
            versions[package] = version
    return versions


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, dict):  # a SavedModel endpoint may name its single output
        value = next(iter(value.values()))
    if isinstance(value, list | tuple):
        value = value[0]
    return np.asarray(keras.ops.convert_to_numpy(value) if not isinstance(value, np.ndarray) else value)


def _check(kind: str, predicted: Any, expected: np.ndarray) -> str:
    """'' when ``predicted`` matches, else why not."""
    found = _as_numpy(predicted)
    if found.shape != expected.shape:
        return f"{kind} predicts shape {found.shape} for the test split, the model {expected.shape}"
    if not np.allclose(found, expected, rtol=RTOL, atol=ATOL):
        worst = float(np.max(np.abs(found.astype("float64") - expected.astype("float64"))))
        return f"{kind} predictions differ from the model's on the test split (max abs difference {worst:.3g})"
    return ""


def _predict_keras(path: Path, x: Any) -> Any:
    loaded = keras.models.load_model(path, compile=False)
    return loaded.predict(x, batch_size=_rows(x), verbose=0)


def _predict_saved_model(path: Path, x: Any) -> Any:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept referenced while it runs: its variables die with it
    return loaded.serve(x)


def _predict_onnx(path: Path, x: Any) -> Any:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {name: np.asarray(x[name]) for name in names} if isinstance(x, dict) else {names[0]: np.asarray(x)}
    return session.run(None, feed)[0]


def _rows(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _write_saved_model(model: keras.Model, target: Path) -> None:
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise NotImplementedError(f"Keras makes SavedModel on tensorflow and jax only (this is {backend})")
    shutil.rmtree(target, ignore_errors=True)
    model.export(str(target), format="tf_saved_model", verbose=False)


def _write_onnx(model: keras.Model, target: Path) -> None:
    # tf2onnx logs every op it cannot convert, then writes a graph that no runtime loads: check it instead.
    logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)
    model.export(str(target), format="onnx", verbose=False)
    import onnx

    onnx.checker.check_model(str(target), full_check=True)


FORMATS: dict[str, tuple[str, Callable[[keras.Model, Path], None], Callable[[Path, Any], Any]]] = {
    "keras": ("model.keras", lambda model, target: model.save(target), _predict_keras),
    "savedmodel": ("saved_model", _write_saved_model, _predict_saved_model),
    "onnx": ("model.onnx", _write_onnx, _predict_onnx),
}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def export_model(
    model: keras.Model,
    out: Path,
    formats: list[str],
    test_x: Inputs | None = None,
    expected: np.ndarray | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the requested formats; returns {kind: path} and {kind: why it was not made}. With ``test_x`` and
    the model's ``expected`` predictions on it, each export is reloaded and must predict them at
    ``len(test_x)`` rows in one batch.

    >>> written, skipped = export_model(model, Path("out"), ["keras", "onnx"], x_test, predictions)  # doctest: +SKIP
    >>> sorted(written), skipped  # doctest: +SKIP
    (['keras', 'onnx'], {})
    """
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    x = keras_inputs(test_x) if test_x is not None else None
    for kind in formats:
        if kind not in FORMATS:
            continue
        name, write, predict = FORMATS[kind]
        target = out / name
        try:
            write(model, target)
        except Exception as exc:  # the backend or some of the model's ops cannot be converted
            _remove(target)
            skipped[kind] = _first_line(exc)
            continue
        if x is not None and expected is not None:
            try:
                problem = _check(kind, predict(target, x), np.asarray(expected))
            except ImportError as exc:  # onnxruntime is not installed: the export stays, unverified
                logging.getLogger("hpsearch.execution.exports").warning("%s not verified: %s", kind, exc)
                problem = ""
            except Exception as exc:  # e.g. an ONNX graph whose batch dimension was fixed at 1
                problem = f"reloading it to predict the test split ({_rows(x)} rows) failed: {_first_line(exc)}"
            if problem:
                _remove(target)
                skipped[kind] = problem
                continue
        written[kind] = target
    return written, skipped
