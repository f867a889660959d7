"""Search strategies = sampler x scheduler. Never imports keras or SQL.

| algorithm | sampler              | scheduler                         |
|-----------|----------------------|-----------------------------------|
| random    | random               | full budget (+ median stopping)   |
| grid      | grid                 | full budget (+ median stopping)   |
| tpe       | Optuna TPE           | full budget (+ median stopping)   |
| bayesian  | Optuna GP            | full budget (+ median stopping)   |
| hyperband | random               | Hyperband (Keras Tuner semantics) |
| bohb      | Optuna TPE           | Hyperband                         |
| asha      | random | tpe | GP  | ASHA                              |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpsearch.strategies.base import NewTrial, Sampler, Scheduler, StudyContext, TrialView
from hpsearch.strategies.samplers import MODEL_WINDOW, GridSampler, OptunaSampler, RandomSampler, SeededSampler
from hpsearch.strategies.schedulers import ASHA, FullBudget, Hyperband, MedianStopping


@dataclass(frozen=True)
class Strategy:
    sampler: Sampler
    scheduler: Scheduler

    @property
    def needs_curves(self) -> bool:
        """Whether ``to_stop`` reads the trials' learning curves (loading them costs a query)."""
        return isinstance(self.scheduler, MedianStopping)

    def prepare(self) -> None:
        """Import what planning needs (Optuna, scipy: seconds) before the first trial, not while workers wait."""
        sampler = self.sampler.inner if isinstance(self.sampler, SeededSampler) else self.sampler
        if isinstance(sampler, OptunaSampler):
            sampler.prepare()

    def plan(self, context: StudyContext, history: Sequence[TrialView], slots: int) -> list[NewTrial]:
        return self.scheduler.plan(context, history, self.sampler, slots)

    def is_finished(self, context: StudyContext, history: Sequence[TrialView]) -> bool:
        return self.scheduler.is_finished(context, history, self.sampler)

    def to_stop(self, context: StudyContext, history: Sequence[TrialView]) -> list[int]:
        return self.scheduler.to_stop(context, history)


def _sampler(name: str, search: Mapping[str, Any]) -> Sampler:
    sampler: Sampler
    if name == "grid":
        sampler = GridSampler()
    elif name in ("tpe", "bayesian"):
        sampler = OptunaSampler(name, search.get("n_startup_trials", 10), search.get("model_window", MODEL_WINDOW))
    else:
        sampler = RandomSampler()
    initial = search.get("initial_trials") or []
    return SeededSampler(sampler, initial) if initial else sampler


def make_strategy(search: Mapping[str, Any]) -> Strategy:
    """The strategy for a study file's ``[search]`` table (as stored with the study)."""
    algorithm = search.get("algorithm", "random")
    factor = search.get("factor", 3)
    if algorithm in ("hyperband", "bohb"):
        sampler = _sampler("tpe" if algorithm == "bohb" else "random", search)
        return Strategy(sampler, Hyperband(factor, search.get("hyperband_iterations", 1)))
    if algorithm == "asha":
        return Strategy(_sampler(search.get("sampler", "random"), search), ASHA(factor, search.get("min_epochs", 1)))
    scheduler: Scheduler = FullBudget()
    if search.get("pruner") == "median":
        scheduler = MedianStopping(scheduler, grace_epochs=search.get("grace_epochs", 1))
    return Strategy(_sampler(algorithm, search), scheduler)


def planned_trials(search: Mapping[str, Any], context: StudyContext) -> int:
    """How many trials a study will run: max_trials, or what the algorithm itself plans (grid, Hyperband)."""
    cap = search.get("max_trials")
    algorithm = search.get("algorithm", "random")
    if algorithm in ("hyperband", "bohb"):
        total = Hyperband(search.get("factor", 3), search.get("hyperband_iterations", 1)).total_trials(
            context.max_epochs
        )
    elif algorithm == "grid":
        total = sum(1 for _ in context.space.grid())
    else:
        return int(cap)
    return min(total, cap) if cap else total


__all__ = [
    "NewTrial",
    "Sampler",
    "Scheduler",
    "Strategy",
    "StudyContext",
    "TrialView",
    "make_strategy",
    "planned_trials",
]
