"""Import a study's hypermodel and data loader (``file.py:function`` or ``module:function``) and check
what the loader returns. Importing a hypermodel imports keras; loading data does not."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpsearch.errors import UserCodeError
from hpsearch.execution.quiet import import_keras_quietly
from hpsearch.references import load_object

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec

SPLITS = ("train", "validation", "test")
Inputs = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Split:
    x: Inputs
    y: np.ndarray
    # Per-example weights (the loader returned (x, y, weight)).
    weight: np.ndarray | None = None
    # Test split only: features to slice the evaluation by (the loader's "slices"), aligned with y.
    slices: Mapping[str, np.ndarray] | None = None
    # Test split only: the name of each class index (the loader's "class_names"), for the final evaluation.
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.y)


Dataset = dict[str, Split]


def load_hypermodel(ref: str, base_dir: str | Path) -> Any:
    """A ``keras_tuner.HyperModel`` for a build function, a HyperModel subclass or instance."""
    import_keras_quietly()
    import keras_tuner as kt

    obj = load_object(ref, base_dir)
    if isinstance(obj, type) and issubclass(obj, kt.HyperModel):
        try:
            return obj()
        except (Exception, SystemExit) as exc:
            raise UserCodeError(ref, f"cannot instantiate: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, kt.HyperModel):
        return obj
    if callable(obj):
        # Keras Tuner's own wrapper for a ``build(hp)`` function, so behaviour matches its tuners.
        from keras_tuner.src.engine.hypermodel import DefaultHyperModel

        return DefaultHyperModel(obj)
    raise UserCodeError(ref, f"is a {type(obj).__name__}, not a function or keras_tuner.HyperModel")


def hypermodel_label(spec: StudySpec) -> str:
    """How messages name the study's hypermodel."""
    if spec.automl is not None:
        return spec.automl.automodel or f"automl.task {spec.automl.task}"
    assert spec.study.hypermodel is not None
    return spec.study.hypermodel


def check_model(model: Any, where: str) -> None:
    """The object a hypermodel built must be a compiled Keras model."""
    import keras

    if not isinstance(model, keras.Model):
        raise UserCodeError(where, f"returned a {type(model).__name__}, not a keras.Model")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise UserCodeError(where, "returned a model that is not compiled (call model.compile(...))")


def _loss_name(model: Any) -> str:
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        return loss
    return str(getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__)


def check_fits(model: Any, dataset: Dataset, where: str) -> None:
    """The data must fit the model the hypermodel built: a sample's shape matches the model's input, and
    sparse class labels index the model's outputs. Caught here, not as a shape error in every trial."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):  # a subclassed model has no symbolic inputs before it is called
        return
    for name, split in dataset.items():
        columns = split.x.values() if isinstance(split.x, dict) else [split.x]
        takes_strings = any("string" in str(getattr(i, "dtype", "")) for i in inputs or [])
        for column in columns:
            if column.dtype.kind in "US" and not takes_strings:
                raise UserCodeError(
                    f"{where}: {name}",
                    f"holds non-numeric values (dtype {column.dtype}); the model takes numbers: convert them",
                )
        if isinstance(split.x, np.ndarray) and inputs and len(inputs) == 1:
            expected, actual = tuple(inputs[0].shape[1:]), tuple(split.x.shape[1:])
            fits = len(expected) == len(actual) and all(
                e is None or e == a for e, a in zip(expected, actual, strict=True)
            )
            if not fits:
                raise UserCodeError(
                    f"{where}: {name}", f"x has shape {actual} per sample; the model expects {expected}"
                )
        y = split.y
        loss = _loss_name(model).lower()
        one_output = bool(outputs) and len(outputs) == 1
        one_column = y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)
        floats = one_output and one_column and y.dtype.kind == "f" and "sparse" in loss and y.size
        # Float class indices: Keras casts them, so 1.5 or 7.0 of 2 classes fails only inside every trial.
        if floats and (not np.all(np.isfinite(y)) or not np.all(y == np.round(y))):
            raise UserCodeError(f"{where}: {name}", "labels are not whole class indices (a sparse loss needs 0, 1, ..)")
        if one_output and y.ndim == 2 and y.shape[1] > 1 and "categorical" in loss and "sparse" not in loss:
            width = outputs[0].shape[-1]
            if width is not None and width != y.shape[1]:
                raise UserCodeError(
                    f"{where}: {name}", f"one-hot labels have {y.shape[1]} columns but the model has {width} outputs"
                )
        sparse = y.dtype.kind in "iuf" and one_column
        if sparse and one_output and "sparse" in loss and y.size:
            classes = outputs[0].shape[-1]
            low, high = int(y.min()), int(y.max())
            if classes is not None and (low < 0 or high >= classes):
                raise UserCodeError(
                    f"{where}: {name}",
                    f"labels range over [{low}, {high}] but the model has {classes} outputs (classes 0..{classes - 1})",
                )


def _as_inputs(x: Any, where: str) -> Inputs:
    if isinstance(x, Mapping):
        return {str(k): np.asarray(v) for k, v in x.items()}
    return np.asarray(x)


def _length(x: Inputs) -> int:
    if isinstance(x, dict):
        return min(len(v) for v in x.values()) if x else 0
    return len(x)


def validate_dataset(raw: Any, where: str) -> Dataset:
    """Turn a loader's return value into splits, or raise one UserCodeError saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise UserCodeError(where, f"returned a {type(raw).__name__}; expected a dict with 'train' and 'validation'")
    unknown = set(raw) - {*SPLITS, "slices", "class_names"}
    if unknown:
        raise UserCodeError(
            where,
            f"returned unknown splits {sorted(unknown)}; expected {list(SPLITS)} and optionally 'slices', "
            "'class_names'",
        )
    dataset: Dataset = {}
    for name in SPLITS:
        if name not in raw:
            if name == "test":
                continue
            raise UserCodeError(where, f"returned no {name!r} split")
        pair = raw[name]
        if not isinstance(pair, tuple | list) or len(pair) not in (2, 3):
            raise UserCodeError(f"{where}: {name}", "must be a pair (x, y) or a triple (x, y, sample_weight)")
        x, y = _as_inputs(pair[0], where), np.asarray(pair[1])
        weight = np.asarray(pair[2], dtype="float32") if len(pair) == 3 else None
        arrays = [*(x.values() if isinstance(x, dict) else [x]), *([weight] if weight is not None else [])]
        lengths = {len(a) for a in arrays if a.ndim > 0} | {len(y)}
        if len(lengths) != 1:
            raise UserCodeError(f"{where}: {name}", f"x and y have different lengths {sorted(lengths)}")
        if len(y) == 0:
            raise UserCodeError(f"{where}: {name}", "split is empty")
        # Strings may feed a model's StringLookup / TextVectorization inputs (check_fits asks the model); labels
        # and everything else must be numbers.
        for array in [*arrays, y]:
            if array.dtype.kind not in "biufc" and (array is y or array.dtype.kind not in "US"):
                raise UserCodeError(
                    f"{where}: {name}", f"holds non-numeric values (dtype {array.dtype}); convert to numeric arrays"
                )
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise UserCodeError(f"{where}: {name}", "contains NaN or infinite values")
        dataset[name] = Split(x, y, weight)
    if "slices" in raw:
        dataset["test"] = _with_slices(dataset, raw["slices"], where)
    if "class_names" in raw:
        dataset["test"] = _with_class_names(dataset, raw["class_names"], where)
    shapes = {n: _feature_shape(s.x) for n, s in dataset.items()}
    if len({repr(s) for s in shapes.values()}) != 1:
        raise UserCodeError(where, f"splits have different input shapes {shapes}")
    return dataset


def _with_slices(dataset: Dataset, raw: Any, where: str) -> Split:
    """The loader's "slices": {feature: values} aligned with the test split, for per-slice evaluation."""
    test = dataset.get("test")
    if test is None:
        raise UserCodeError(f"{where}: slices", "given without a 'test' split to slice")
    if not isinstance(raw, Mapping) or not raw:
        raise UserCodeError(f"{where}: slices", "must be a non-empty dict {feature: values aligned with test}")
    slices = {}
    for feature, values in raw.items():
        if not isinstance(feature, str) or not feature.isidentifier():
            raise UserCodeError(f"{where}: slices", f"feature name {feature!r} is not an identifier")
        column = np.asarray(values)
        if column.dtype.kind == "O":
            column = column.astype(str)
        if column.ndim != 1 or len(column) != len(test):
            raise UserCodeError(
                f"{where}: slices.{feature}", f"has shape {column.shape}; expected ({len(test)},) like the test split"
            )
        slices[str(feature)] = column
    return Split(test.x, test.y, test.weight, slices)


def _with_class_names(dataset: Dataset, raw: Any, where: str) -> Split:
    """The loader's "class_names": one name per class index (``["died", "survived"]``, or a scikit-learn
    dataset's ``target_names``), which the final model's evaluation shows instead of 0, 1, ..."""
    test = dataset.get("test")
    if test is None:
        raise UserCodeError(f"{where}: class_names", "given without a 'test' split to evaluate")
    if isinstance(raw, str | bytes | Mapping) or not hasattr(raw, "__len__"):
        raise UserCodeError(f"{where}: class_names", "must be a list of names, one per class index (0, 1, ...)")
    names = tuple(str(name) for name in raw)
    if len(names) < 2 or len(set(names)) != len(names):
        raise UserCodeError(f"{where}: class_names", f"must name at least two classes, each once; got {list(names)}")
    y = np.asarray(test.y)
    if y.ndim > 1 and y.shape[1] > 1:  # one-hot rows
        if y.shape[1] != len(names):
            raise UserCodeError(f"{where}: class_names", f"names {len(names)} classes; the labels have {y.shape[1]}")
    elif y.dtype.kind in "biu" and len(y) and (int(y.max()) >= len(names) or int(y.min()) < 0):
        raise UserCodeError(
            f"{where}: class_names", f"names {len(names)} classes; the test labels go up to {int(y.max())}"
        )
    return Split(test.x, test.y, test.weight, test.slices, names)


def _feature_shape(x: Inputs) -> Any:
    if isinstance(x, dict):
        return {k: v.shape[1:] for k, v in sorted(x.items())}
    return x.shape[1:]


def load_dataset(ref: str, base_dir: str | Path) -> Dataset:
    import_keras_quietly()  # a loader module may import keras: its backend's start-up lines stay quiet
    loader = load_object(ref, base_dir)
    if not callable(loader):
        raise UserCodeError(ref, f"is a {type(loader).__name__}, not a function")
    try:
        raw = loader()
    except (Exception, SystemExit) as exc:  # SystemExit too: `hpsearch study create` would exit 0 silently
        raise UserCodeError(ref, f"raised {type(exc).__name__}: {exc}") from exc
    return validate_dataset(raw, ref)


def save_dataset(dataset: Dataset, directory: Path) -> None:
    """Write each array as .npy so trial processes memory-map it instead of loading or copying it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, split in dataset.items():
        items = split.x.items() if isinstance(split.x, dict) else [("", split.x)]
        for key, array in items:
            np.save(directory / f"{name}.x.{key}.npy", array)
        np.save(directory / f"{name}.y.npy", split.y)
        if split.weight is not None:
            np.save(directory / f"{name}.w.npy", split.weight)
        for feature, column in (split.slices or {}).items():
            np.save(directory / f"{name}.s.{feature}.npy", column)
        if split.class_names is not None:
            (directory / f"{name}.classes.json").write_text(json.dumps(list(split.class_names)), encoding="utf-8")


def keras_inputs(x: Inputs) -> Any:
    """``x`` as Keras takes it: numpy's fixed-width string arrays become arrays of Python strings (Keras
    rejects the former; string inputs feed ``TextVectorization`` / ``StringLookup`` layers)."""

    def convert(array: np.ndarray) -> np.ndarray:
        return array.astype(object) if array.dtype.kind in "US" else array

    return {k: convert(v) for k, v in x.items()} if isinstance(x, dict) else convert(x)


def open_dataset(directory: Path) -> Dataset:
    """Memory-map a dataset written by :func:`save_dataset`."""
    dataset: Dataset = {}
    for name in SPLITS:
        y_path = directory / f"{name}.y.npy"
        if not y_path.exists():
            continue
        xs = {p.name.split(".")[2]: np.load(p, mmap_mode="r") for p in sorted(directory.glob(f"{name}.x.*.npy"))}
        x: Inputs = xs[""] if set(xs) == {""} else xs
        w_path = directory / f"{name}.w.npy"
        weight = np.load(w_path, mmap_mode="r") if w_path.exists() else None
        slices = {p.name.split(".")[2]: np.load(p) for p in sorted(directory.glob(f"{name}.s.*.npy"))}  # identifiers
        names_path = directory / f"{name}.classes.json"
        names = tuple(json.loads(names_path.read_text(encoding="utf-8"))) if names_path.exists() else None
        dataset[name] = Split(x, np.load(y_path, mmap_mode="r"), weight, slices or None, names)
    return dataset
