"""Import a study's hypermodel and data loader (``file.py:function`` or ``module:function``) and check
what the loader returns. Importing a hypermodel imports keras; loading data does not."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpsearch.errors import UserCodeError

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec

SPLITS = ("train", "validation", "test")
Inputs = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Split:
    x: Inputs
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


Dataset = dict[str, Split]


def load_object(ref: str, base_dir: str | Path) -> Any:
    """Resolve ``file.py:name`` (relative to ``base_dir``) or ``package.module:name``."""
    target, _, attribute = ref.rpartition(":")
    base = Path(base_dir)
    try:
        if target.endswith(".py"):
            path = (base / target).resolve()
            if not path.is_file():
                raise UserCodeError(ref, f"no such file {path}")
            module_name = f"hpsearch_user.{path.stem}_{abs(hash(str(path))) % 10**8}"
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                # Siblings of the study's python file import each other as in a script.
                if str(path.parent) not in sys.path:
                    sys.path.insert(0, str(path.parent))
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            if str(base) not in sys.path:
                sys.path.insert(0, str(base))
            module = importlib.import_module(target)
    except UserCodeError:
        raise
    except Exception as exc:
        raise UserCodeError(ref, f"import failed: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise UserCodeError(ref, f"{target} has no attribute {attribute!r}") from None


def load_hypermodel(ref: str, base_dir: str | Path) -> Any:
    """A ``keras_tuner.HyperModel`` for a build function, a HyperModel subclass or instance."""
    import keras_tuner as kt

    obj = load_object(ref, base_dir)
    if isinstance(obj, type) and issubclass(obj, kt.HyperModel):
        try:
            return obj()
        except Exception as exc:
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


def study_hypermodel(spec: StudySpec, base_dir: str | Path, dataset: Dataset) -> Any:
    """The study's hypermodel: its ``hypermodel`` reference, or the AutoKeras graph of its ``[automl]`` table
    (which fits its preprocessing on ``dataset``'s training split)."""
    if spec.automl is None:
        assert spec.study.hypermodel is not None
        return load_hypermodel(spec.study.hypermodel, base_dir)
    from hpsearch.automl import automl_hypermodel

    narrowed = {name: list(p.values) for name, p in spec.space.items() if p.type == "choice"}
    return automl_hypermodel(
        spec.automl,
        base_dir,
        dataset,
        epochs=spec.search.max_epochs,
        batch_size=spec.fit.batch_size,
        narrowed=narrowed,
    )


def check_model(model: Any, where: str) -> None:
    """The object a hypermodel built must be a compiled Keras model."""
    import keras

    if not isinstance(model, keras.Model):
        raise UserCodeError(where, f"returned a {type(model).__name__}, not a keras.Model")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise UserCodeError(where, "returned a model that is not compiled (call model.compile(...))")


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
    unknown = set(raw) - set(SPLITS)
    if unknown:
        raise UserCodeError(where, f"returned unknown splits {sorted(unknown)}; expected {list(SPLITS)}")
    dataset: Dataset = {}
    for name in SPLITS:
        if name not in raw:
            if name == "test":
                continue
            raise UserCodeError(where, f"returned no {name!r} split")
        pair = raw[name]
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise UserCodeError(f"{where}: {name}", "must be a pair (x, y)")
        x, y = _as_inputs(pair[0], where), np.asarray(pair[1])
        arrays = x.values() if isinstance(x, dict) else [x]
        lengths = {len(a) for a in arrays if a.ndim > 0} | {len(y)}
        if len(lengths) != 1:
            raise UserCodeError(f"{where}: {name}", f"x and y have different lengths {sorted(lengths)}")
        if len(y) == 0:
            raise UserCodeError(f"{where}: {name}", "split is empty")
        for array in [*arrays, y]:
            if array.dtype.kind == "O":
                raise UserCodeError(f"{where}: {name}", "holds Python objects; convert to numeric arrays")
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise UserCodeError(f"{where}: {name}", "contains NaN or infinite values")
        dataset[name] = Split(x, y)
    shapes = {n: _feature_shape(s.x) for n, s in dataset.items()}
    if len({repr(s) for s in shapes.values()}) != 1:
        raise UserCodeError(where, f"splits have different input shapes {shapes}")
    return dataset


def _feature_shape(x: Inputs) -> Any:
    if isinstance(x, dict):
        return {k: v.shape[1:] for k, v in sorted(x.items())}
    return x.shape[1:]


def load_dataset(ref: str, base_dir: str | Path) -> Dataset:
    loader = load_object(ref, base_dir)
    if not callable(loader):
        raise UserCodeError(ref, f"is a {type(loader).__name__}, not a function")
    try:
        raw = loader()
    except Exception as exc:
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
        dataset[name] = Split(x, np.load(y_path, mmap_mode="r"))
    return dataset
