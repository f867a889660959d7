"""Which failures of a trial will recur in every trial, whatever its parameters: the study stops at the first.

A missing module, a loss that does not fit the labels, an objective the model never logs: each trial would
train (or start) and fail the same way, so the worker fails the study at once with that one line rather than
spending the whole budget. Anything else (a parameter combination that cannot be built, an out-of-memory
error, a NaN loss) fails only its trial. This module imports nothing heavy.

>>> recurs_in_every_trial(ModuleNotFoundError("No module named 'sklearn'"))
True
>>> recurs_in_every_trial(ValueError("Arguments `target` and `output` must have the same shape"))
True
>>> recurs_in_every_trial(MemoryError())
False
"""

from __future__ import annotations

import re

from hpsearch.errors import UserCodeError

# Keras' and TensorFlow's words for labels that do not fit the loss (sparse vs one-hot, class count).
_LABEL_MISMATCH = re.compile(
    r"`target` and `output` must have the same (shape|rank)"
    r"|logits and labels must (have the same|be broadcastable)"
    r"|label value of -?\d+ which is outside the valid range"
    r"|only sparse labels?|expected.*labels.*(one-hot|sparse)",
    re.IGNORECASE,
)


def recurs_in_every_trial(exc: BaseException) -> bool:
    """Whether ``exc``, raised in a trial's child, would be raised by every trial of the study.

    >>> recurs_in_every_trial(RuntimeError("out of memory"))
    False
    """
    if isinstance(exc, ImportError | SyntaxError | UserCodeError):
        return True  # the hypermodel or one of its imports cannot load in the worker's environment
    return bool(_LABEL_MISMATCH.search(str(exc)))


def first_line(reason: str) -> str:
    """The first line of a failure reason (the rest is a traceback).

    >>> first_line("ValueError: bad\\nTraceback ...")
    'ValueError: bad'
    """
    return reason.strip().splitlines()[0] if reason.strip() else reason
