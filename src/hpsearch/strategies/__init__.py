"""Search strategies = sampler x scheduler. Never imports keras or SQL.

| algorithm | sampler                    | scheduler                                 |
|-----------|----------------------------|-------------------------------------------|
| random    | random (or ``sampler``)    | full budget or ``scheduler`` (+ median)   |
| grid      | grid                       | full budget or ``scheduler`` (+ median)   |
| tpe       | Optuna TPE                 | full budget or ``scheduler`` (+ median)   |
| bayesian  | Optuna GP                  | full budget or ``scheduler`` (+ median)   |
| hyperband | random (or ``sampler``)    | Hyperband (Keras Tuner semantics)         |
| bohb      | Optuna TPE                 | Hyperband                                 |
| asha      | random, tpe, GP or user's  | ASHA                                      |

Each name is an entry of :mod:`hpsearch.strategies.registry`; :func:`register_algorithm` adds one.
``sampler`` / ``scheduler`` may name user code (``"samplers.py:make_sampler"``, see
:mod:`hpsearch.strategies.user`), resolved where the coordinator runs.

>>> strategy = make_strategy({"algorithm": "asha", "factor": 3})
>>> type(strategy.scheduler).__name__
'ASHA'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsearch.strategies.base import NewTrial, Sampler, Scheduler, StudyContext, TrialView
from hpsearch.strategies.options import SearchOptions
from hpsearch.strategies.registry import (
    Algorithm,
    algorithm,
    algorithms,
    check_user_code,
    make_strategy,
    planned_trials,
    register_algorithm,
    unregister_algorithm,
)

if TYPE_CHECKING:
    from hpsearch.strategies.strategy import Strategy


def __getattr__(name: str) -> Any:
    # Strategy imports the samplers and schedulers: only when asked for (the spec, which the worker imports,
    # reads the registry through this package).
    if name == "Strategy":
        from hpsearch.strategies.strategy import Strategy

        return Strategy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Algorithm",
    "NewTrial",
    "Sampler",
    "Scheduler",
    "SearchOptions",
    "Strategy",
    "StudyContext",
    "TrialView",
    "algorithm",
    "algorithms",
    "check_user_code",
    "make_strategy",
    "planned_trials",
    "register_algorithm",
    "unregister_algorithm",
]
