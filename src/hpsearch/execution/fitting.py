"""Calling a hypermodel's ``fit`` so that the user's fit wins.

Keras Tuner passes what ``search()`` was given to ``HyperModel.fit(hp, model, *args, **kwargs)``, and a user's
``fit`` often sets some of ``model.fit``'s arguments itself (its "Getting started" guide tunes
``shuffle=hp.Boolean("shuffle")``), then forwards ``**kwargs``: an argument both sides set is a
``TypeError: got multiple values for keyword argument``. hpsearch therefore:

- passes to ``HyperModel.fit`` only what Keras Tuner's ``search()`` would: ``x`` and ``y``; ``validation_data``,
  ``epochs`` and ``callbacks``; the study's ``[fit]`` values the user wrote (``batch_size``, ``shuffle``,
  ``class_weight``) and the loader's ``sample_weight``; minus every argument the user's ``fit`` sets itself
  (found in its source; failing that, from the collision, before anything trained);
- adds its own settings (``verbose=0``, and ``initial_epoch`` to resume) to the user's ``model.fit`` call
  only where that call leaves them unset, and merges its callbacks (the reporter, checkpoints, TensorBoard,
  ``[fit]`` callbacks) into the call's callbacks list: they are never dropped, and nothing else is overridden.

The trade-offs, where exact resume needs something: a trial resumes from a checkpoint by passing
``initial_epoch``; a ``fit`` that sets ``initial_epoch`` itself, or calls ``fit`` on another object than the
model it was given, or trains in its own loop, restarts its epochs from its own value. A ``fit`` that sets
``epochs`` trains that many, whatever the study's budget (Hyperband's rungs then do not apply).
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import textwrap
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("hpsearch.execution.fitting")
# keras.Model.fit's parameters in order, to name the ones a call passes by position.
MODEL_FIT_PARAMETERS = (
    "x",
    "y",
    "batch_size",
    "epochs",
    "verbose",
    "callbacks",
    "validation_split",
    "validation_data",
    "shuffle",
    "class_weight",
    "sample_weight",
    "initial_epoch",
    "steps_per_epoch",
    "validation_steps",
    "validation_batch_size",
    "validation_freq",
)
_COLLISION = re.compile(r"got multiple values for (?:keyword )?argument '(\w+)'")


def fit_keywords(hypermodel: Any) -> frozenset[str] | None:
    """The ``model.fit`` arguments a hypermodel's ``fit`` sets itself, read from its source: every keyword
    of a ``.fit(...)`` call in it, and the arguments such a call passes by position after ``x`` and ``y``.
    Empty for Keras Tuner's own ``fit``; None when the source cannot be read.

    >>> import keras_tuner  # doctest: +SKIP
    >>> class Guide(keras_tuner.HyperModel):  # doctest: +SKIP
    ...     def fit(self, hp, model, *args, **kwargs):
    ...         return model.fit(*args, shuffle=hp.Boolean("shuffle"), **kwargs)
    >>> fit_keywords(Guide())  # doctest: +SKIP
    frozenset({'shuffle'})
    """
    fit = getattr(type(hypermodel), "fit", None)
    if fit is None or (getattr(fit, "__module__", None) or "").startswith("keras_tuner."):
        return frozenset()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fit)))
    except (OSError, TypeError, SyntaxError):  # defined where no source is kept (exec, a console)
        return None
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"):
            continue
        found.update(keyword.arg for keyword in node.keywords if keyword.arg is not None)
        receiver = node.func.value
        if isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and receiver.func.id == "super":
            continue  # super().fit(hp, model, ...): HyperModel.fit's own positions
        for position, argument in enumerate(node.args):
            if isinstance(argument, ast.Starred):
                break
            if 2 <= position < len(MODEL_FIT_PARAMETERS):
                found.add(MODEL_FIT_PARAMETERS[position])
    return frozenset(found)


def fit_hypermodel(
    hypermodel: Any,
    hp: Any,
    model: Any,
    x: Any,
    y: Any,
    *,
    passed: Mapping[str, Any],
    added: Mapping[str, Any],
    label: str = "the hypermodel",
) -> Any:
    """``hypermodel.fit(hp, model, x, y, **passed)`` with the user's arguments winning (see the module).

    ``passed`` are what Keras Tuner's ``search()`` would pass on; ``added`` are hpsearch's own ``model.fit``
    settings. ``passed["callbacks"]``, if given, end up in every ``model.fit`` call the user's ``fit`` makes.

    >>> fit_hypermodel(hm, hp, model, x, y, passed={"epochs": 3, "callbacks": [reporter]},
    ...                added={"verbose": 0})  # doctest: +SKIP
    """
    sets_itself = fit_keywords(hypermodel)
    withheld = {key for key in passed if sets_itself is not None and key in sets_itself}
    _say_withheld(withheld, passed, label)
    original = model.fit
    entered = False

    def completed_fit(*args: Any, **kwargs: Any) -> Any:
        nonlocal entered
        entered = True
        call = inspect.signature(original).bind_partial(*args, **kwargs)
        for key, value in [*added.items(), *((k, passed[k]) for k in withheld)]:
            call.arguments.setdefault(key, value)
        ours = list(passed.get("callbacks") or [])
        theirs = list(call.arguments.get("callbacks") or [])
        if any(not any(c is t for t in theirs) for c in ours):
            call.arguments["callbacks"] = [*theirs, *(c for c in ours if not any(c is t for t in theirs))]
        return original(*call.args, **call.kwargs)

    object.__setattr__(model, "fit", completed_fit)  # past keras' attribute tracking; removed below
    try:
        while True:
            try:
                return hypermodel.fit(hp, model, x, y, **{k: v for k, v in passed.items() if k not in withheld})
            except TypeError as exc:
                clash = _COLLISION.search(str(exc))
                # Only a collision raised before any training (no model.fit call yet) is safe to retry.
                if entered or clash is None or clash.group(1) not in passed or clash.group(1) in withheld:
                    raise
                withheld.add(clash.group(1))
                _say_withheld({clash.group(1)}, passed, label)
    finally:
        object.__delattr__(model, "fit")


def _say_withheld(keys: set[str], passed: Mapping[str, Any], label: str) -> None:
    for key in sorted(keys):
        if key in ("batch_size", "shuffle", "class_weight"):
            log.warning("%s: its fit sets %s itself; [fit] %s = %r is not used", label, key, key, passed[key])
        else:
            log.info("%s: its fit sets %s itself; its value is used", label, key)
