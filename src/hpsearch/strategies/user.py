"""User samplers and schedulers: resolve a study file's ``sampler = "mymodule:make_sampler"`` (or an object
given from Python) into the :class:`~hpsearch.strategies.base.Sampler` / ``Scheduler`` the coordinator plans
with. Imports user code, never hpsearch's execution layer (nor keras): references resolve like a study's
``hypermodel`` (``file.py:function`` relative to the study file, or ``module:function`` importable from it).

A sampler may be:

- an Optuna ``BaseSampler`` (or a function or class returning one; one with a ``seed`` parameter is called
  at every planning step with a seed derived from the study seed and the history, as hpsearch's own TPE):
  it plans through the same path as the built-in TPE / GP samplers (an in-memory Optuna study rebuilt
  from the history, pending trials added as RUNNING);
- a function over the history, ``(context, history, count) -> list[dict]`` of parameter sets (or a function
  returning one), or an object with such a ``sample`` method.

A scheduler is an object with ``plan``, ``is_finished`` and ``to_stop`` (see ``Scheduler``), or a function
or class returning one.
"""

from __future__ import annotations

import inspect
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hpsearch.errors import UserCodeError
from hpsearch.references import load_object
from hpsearch.space import Value
from hpsearch.strategies.base import Sampler, Scheduler, StudyContext, TrialView
from hpsearch.strategies.samplers import OptunaSampler

_SAMPLER_KINDS = "an optuna BaseSampler, a Sampler or a function (context, history, count) -> list of params"
_SCHEDULER_KINDS = "a Scheduler (with plan, is_finished and to_stop)"


def resolve(ref: str, base_dir: str | Path | None) -> Any:
    """The object ``ref`` names, resolved as a study's ``hypermodel`` is (:func:`hpsearch.references.load_object`).

    >>> resolve("optuna.samplers:RandomSampler", None).__name__  # doctest: +SKIP
    'RandomSampler'
    """
    return load_object(ref, base_dir)


def _is_optuna_sampler(obj: Any) -> bool:
    # An Optuna sampler exists only once optuna is imported: no import here, so this stays cheap.
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(obj, optuna.samplers.BaseSampler)


def _binds(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return True


def _call_factory(factory: Callable[..., Any], seed: int) -> Any:
    return factory(seed=seed) if _binds(factory, seed=seed) else factory()


class BadUserOutput(TypeError):
    """A user sampler returned something that is not what it must return (the message says what)."""


class FunctionSampler:
    """A function ``(context, history, count) -> list[dict]`` as a Sampler; checks what it returns.

    >>> sampler = FunctionSampler(lambda context, history, count: [{"x": 0.5}] * count)
    >>> sampler.sample(None, [], 2)  # doctest: +SKIP
    [{'x': 0.5}, {'x': 0.5}]
    """

    def __init__(self, fn: Callable[[StudyContext, Sequence[TrialView], int], Any]) -> None:
        self.fn = fn

    def sample(self, context: StudyContext, history: Sequence[TrialView], count: int) -> list[dict[str, Value]]:
        out = self.fn(context, history, count)
        if not isinstance(out, list) or not all(isinstance(p, dict) for p in out):
            kind = type(out).__name__
            raise BadUserOutput(f"sampler {_name(self.fn)} returned {kind}, not a list of parameter dicts")
        return out[:count]


class UserOptunaSampler(OptunaSampler):
    """A user's Optuna sampler planning through the built-in Optuna path (no Sobol start-up of ours: the
    sampler has its own). ``factory(seed)`` (or ``factory()``) gives the sampler for one planning step.

    >>> import optuna  # doctest: +SKIP
    >>> sampler = UserOptunaSampler(lambda seed: optuna.samplers.QMCSampler(seed=seed))  # doctest: +SKIP
    """

    def __init__(self, factory: Callable[..., Any], window: int | None = None) -> None:
        super().__init__("user", n_startup_trials=0, **({} if window is None else {"window": window}))
        self.factory = factory

    def optuna_sampler(self, seed: int, grouped: bool) -> Any:
        sampler = _call_factory(self.factory, seed)
        if not _is_optuna_sampler(sampler):
            raise BadUserOutput(f"{_name(self.factory)} returned {type(sampler).__name__}, not an optuna BaseSampler")
        return sampler


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def as_sampler(obj: Any, window: int | None = None, where: str = "sampler") -> Sampler:
    """A Sampler for a user's object (see the module docstring); a UserCodeError naming ``where`` if it is none.

    >>> as_sampler(lambda context, history, count: [])  # doctest: +ELLIPSIS
    <hpsearch.strategies.user.FunctionSampler object at ...>
    """
    if _is_optuna_sampler(obj):
        return UserOptunaSampler(lambda: obj, window)
    if not isinstance(obj, type) and callable(getattr(obj, "sample", None)):
        return obj
    if not callable(obj):
        raise UserCodeError(where, f"is {type(obj).__name__}, not {_SAMPLER_KINDS}")
    if not isinstance(obj, type) and _binds(obj, None, None, 0):
        return FunctionSampler(obj)
    # A factory: what it returns decides (called once now; an Optuna one again at every planning step).
    try:
        made = _call_factory(obj, random.Random(0).randrange(2**31))
    except Exception as exc:
        raise UserCodeError(where, f"raised {type(exc).__name__}: {exc}") from exc
    if _is_optuna_sampler(made):
        return UserOptunaSampler(obj, window)
    if isinstance(made, type) or not (callable(made) or callable(getattr(made, "sample", None))):
        raise UserCodeError(where, f"returned {type(made).__name__}, not {_SAMPLER_KINDS}")
    return as_sampler(made, window, where)


def as_scheduler(obj: Any, where: str = "scheduler") -> Scheduler:
    """A Scheduler for a user's object or the object a function / class returns; else a UserCodeError.

    >>> from hpsearch.strategies.schedulers import FullBudget
    >>> as_scheduler(FullBudget)  # doctest: +ELLIPSIS
    <hpsearch.strategies.schedulers.FullBudget object at ...>
    """

    def is_scheduler(candidate: Any) -> bool:
        methods = ("plan", "is_finished", "to_stop")
        return not isinstance(candidate, type) and all(callable(getattr(candidate, m, None)) for m in methods)

    if is_scheduler(obj):
        return obj
    if not callable(obj):
        raise UserCodeError(where, f"is {type(obj).__name__}, not {_SCHEDULER_KINDS}")
    try:
        made = obj()
    except Exception as exc:
        raise UserCodeError(where, f"raised {type(exc).__name__}: {exc}") from exc
    if not is_scheduler(made):
        raise UserCodeError(where, f"returned {type(made).__name__}, not {_SCHEDULER_KINDS}")
    return made


def sampler_from(ref: str, base_dir: str | Path | None, window: int | None = None) -> Sampler:
    """The Sampler a ``sampler = "module:function"`` reference names.

    >>> sampler_from("optuna.samplers:TPESampler", None)  # doctest: +SKIP
    """
    return as_sampler(resolve(ref, base_dir), window, where=ref)


def scheduler_from(ref: str, base_dir: str | Path | None) -> Scheduler:
    """The Scheduler a ``scheduler = "module:function"`` reference names.

    >>> scheduler_from("hpsearch.strategies.schedulers:FullBudget", None)  # doctest: +ELLIPSIS
    <hpsearch.strategies.schedulers.FullBudget object at ...>
    """
    return as_scheduler(resolve(ref, base_dir), where=ref)
