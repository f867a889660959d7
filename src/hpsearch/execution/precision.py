"""``[fit] mixed_precision`` and ``[fit] jit_compile``, applied in a trial's (or a final job's) process before
the hypermodel builds its model.

- ``mixed_precision = true``: Keras' ``mixed_float16`` policy (float16 compute, float32 variables; ``compile``
  then scales the loss). Set globally in the process: each trial is a fresh process forked from the worker's
  fork server, so the policy never leaks into another trial.
- ``jit_compile = true|false``: the default of ``jit_compile`` for every ``Model.compile`` in the process,
  used only where the hypermodel's own ``compile`` call leaves it unset (the user's code wins, as with
  ``fit``; see :mod:`hpsearch.execution.fitting`). Keras itself turns it off for a model that cannot be
  compiled with XLA and for ``run_eagerly``.

Also caps torch's GPU memory at a slot's share (see :mod:`hpsearch.execution.gpu`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import keras

from hpsearch.execution.gpu import limit_torch_memory

MIXED_POLICY = "mixed_float16"


def apply_fit_options(mixed_precision: bool, jit_compile: bool | None) -> None:
    """Set up this trial process: GPU memory share, precision policy, default ``jit_compile``."""
    limit_torch_memory()
    if mixed_precision:
        keras.mixed_precision.set_global_policy(MIXED_POLICY)
    if jit_compile is not None:
        default_jit_compile(jit_compile)


def default_jit_compile(value: bool) -> None:
    """Make ``value`` the ``jit_compile`` of every later ``Model.compile`` call that does not pass one."""
    original = keras.Model.compile
    original = getattr(original, "__wrapped__", original)  # applied once per process, the last value wins
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compile(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = signature.bind_partial(self, *args, **kwargs)
        if "jit_compile" not in call.arguments:
            kwargs["jit_compile"] = value
        return original(self, *args, **kwargs)

    keras.Model.compile = compile
