"""The algorithm options of a study's ``[search]`` table, with their defaults and bounds stated once.

:class:`hpsearch.spec.SearchSection` inherits these fields (adding the budgets), and the registry builds
strategies from them, so a default lives here and nowhere else. Never imports Optuna: only names and numbers.

>>> SearchOptions().factor
3
>>> SearchOptions.from_search({"algorithm": "hyperband", "factor": 4, "max_epochs": 9}).factor
4
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The built-in samplers that ``sampler`` may name (any other value is a ``module:function`` reference).
SAMPLER_NAMES = ("random", "tpe", "bayesian")
# Options every algorithm takes (its seeded parameter sets); the registry lists the others per algorithm.
COMMON_OPTIONS = frozenset({"initial_trials"})


def is_reference(value: str) -> bool:
    """Whether a ``sampler`` / ``scheduler`` value names user code (``file.py:function``, ``module:function``).

    >>> is_reference("tpe"), is_reference("samplers.py:make_sampler")
    (False, True)
    """
    return ":" in value


def check_reference(ref: str) -> str:
    """``ref`` if it has the shape ``target:attribute``; else a ValueError saying what shape it needs."""
    target, sep, attribute = ref.rpartition(":")
    if not sep or not target or not attribute.isidentifier():
        raise ValueError("must be 'file.py:function' or 'module:function'")
    return ref


class SearchOptions(BaseModel):
    """Every algorithm option (each algorithm takes some of them: see :mod:`hpsearch.strategies.registry`).

    >>> SearchOptions(sampler="tpe").n_startup_trials
    10
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Algorithm options; defaults follow Keras Tuner where it has the same algorithm.
    factor: int = Field(default=3, ge=2, le=100)
    hyperband_iterations: int = Field(default=1, gt=0, le=1000)
    min_epochs: int = Field(default=1, gt=0)
    n_startup_trials: int = Field(default=10, ge=1)
    # TPE / GP fit their model on at most this many finished trials: the best 25 and the most recent.
    model_window: int = Field(default=200, ge=25, le=100_000)
    # A built-in sampler name, or user code: "file.py:function" (relative to the study file) or "module:function"
    # returning an Optuna BaseSampler or a function (context, history, count) -> list of parameter dicts.
    sampler: str = "random"
    # User code returning a Scheduler (plan, is_finished, to_stop) in place of the full-budget scheduler.
    scheduler: str | None = None
    pruner: Literal["none", "median"] = "none"
    grace_epochs: int = Field(default=1, ge=1)
    # auto only: how many workers will train the study at once (several hosts: state it); default [run] workers.
    workers: int | None = Field(default=None, ge=1, le=100_000)
    # Parameter sets tried first, in order (AutoML studies start with AutoKeras's known-good ones).
    initial_trials: list[dict[str, int | float | str | bool]] = []

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, value: str) -> str:
        if is_reference(value):
            return check_reference(value)
        if value not in SAMPLER_NAMES:
            # The words pydantic uses for a Literal, so the message reads as before references existed.
            names = [repr(n) for n in SAMPLER_NAMES]
            raise ValueError(f"Input should be {', '.join(names[:-1])} or {names[-1]}")
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str | None) -> str | None:
        return None if value is None else check_reference(value)

    @classmethod
    def from_search(cls, search: Mapping[str, Any]) -> SearchOptions:
        """The options of a ``[search]`` table (a stored spec, or part of one: missing options take defaults)."""
        return cls.model_validate({k: v for k, v in search.items() if k in cls.model_fields})
