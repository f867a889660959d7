"""A study file's validation errors as the user reads them: every one at once, each ``<file>: <field>: <what>``,
with "did you mean" for a misspelt field and the study-file spelling of Keras Tuner habits.

>>> from hpsearch.spec import validate_spec
>>> try:
...     validate_spec({"study": {"name": "s", "data": "d.py:f", "objective": "val_loss", "hypermodel": "m.py:b"},
...                    "search": {"max_trials": 5, "max_trail": 5, "max_epochs": 2}}, "s.toml")
... except SpecError as exc:
...     print(exc.where, "|", exc.what)
s.toml: search.max_trail | unknown field; did you mean 'max_trials'?
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from hpsearch.errors import SpecError

# Where Keras Tuner (or a guess) puts a setting, and where a study file has it.
KERAS_TUNER_HABITS = {
    "fit.epochs": "search.max_epochs (each trial's epochs; [fit] takes model.fit's other arguments)",
    "search.epochs": "search.max_epochs",
    "study.max_trials": "search.max_trials",
    "search.objective": "study.objective",
    "fit.objective": "study.objective",
    "search.tuner": "search.algorithm",
    "study.tuner": "search.algorithm",
    "search.executions_per_trial": "search.cv_folds (K-fold) or separate trials",
    "fit.validation_split": "the data loader's 'validation' split",
    "fit.validation_data": "the data loader's 'validation' split",
}


# pydantic puts a union member's label into the path (study.objective.Objective); the file has none.
_UNION_LABELS = ("Objective", "list[Objective]")


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # The parameter tag too: space.lr.float.min is space.lr.min in the file.
    if len(loc) > 2 and loc[0] == "space" and loc[2] in ("int", "float", "choice", "boolean", "fixed"):
        loc = loc[:2] + loc[3:]
    return tuple(part for part in loc if part not in _UNION_LABELS)


def _lookup(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(data, str) and key == "name":  # objective = "val_loss" stands for { name = "val_loss" }
            return data
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def spec_error(errors: Sequence[Any], data: Any, source: str, root: type[BaseModel]) -> SpecError:
    """One SpecError for pydantic's ``errors``: its where/what is the first error (the deepest complaint about
    the first field at fault), and ``also`` holds the others, one per field."""
    paths = [_field_path(tuple(e["loc"])) for e in errors]
    # A union reports every member's complaint about one field (the whole value, then the very element at
    # fault): keep, per field, the deepest complaint only.
    kept: list[tuple[tuple[Any, ...], Any]] = []
    for path, error in zip(paths, errors, strict=True):
        if any(other[: len(path)] == path and len(other) > len(path) for other in paths):
            continue
        if all(path != seen for seen, _ in kept):
            kept.append((path, error))
    first = paths[0]
    kept.sort(key=lambda item: item[0][: len(first)] != first)  # the first field at fault stays first
    lines = [(f"{source}: {'.'.join(map(str, p)) or '(top level)'}", _what(e, p, data, root)) for p, e in kept]
    error = SpecError(*lines[0])
    error.also = tuple(lines[1:])
    return error


def _what(error: Any, path: tuple[Any, ...], data: Any, root: type[BaseModel]) -> str:
    dotted = ".".join(map(str, path))
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        habit = KERAS_TUNER_HABITS.get(dotted)
        if habit is not None:
            return f"unknown field; a study file has this as {habit}"
        close = difflib.get_close_matches(str(path[-1]), _fields_at(root, path[:-1]), n=1, cutoff=0.7)
        return "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
    shown = repr(_lookup(data, path))
    shown = shown if len(shown) <= 80 else shown[:60] + "..."  # one readable line, even for a long name
    return f"{error['msg'].removeprefix('Value error, ')} (got {shown})"


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The field names of the table at ``path`` (empty when it is no model: a dict of parameters)."""
    current: Any = model
    for key in path:
        fields = getattr(current, "model_fields", None)
        if fields is None or key not in fields:
            return []
        current = _model_in(fields[key].annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The pydantic model an annotation holds (``X``, ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
