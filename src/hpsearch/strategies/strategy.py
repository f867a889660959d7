"""A strategy: a sampler times a scheduler, as the coordinator plans with it.

>>> from hpsearch.strategies.samplers import RandomSampler
>>> from hpsearch.strategies.schedulers import FullBudget
>>> Strategy(RandomSampler(), FullBudget()).needs_curves
False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpsearch.strategies.base import NewTrial, Sampler, Scheduler, StudyContext, TrialView
from hpsearch.strategies.samplers import OptunaSampler, SeededSampler
from hpsearch.strategies.schedulers import MedianStopping


@dataclass(frozen=True)
class Strategy:
    """A sampler (which parameters) times a scheduler (how many epochs; which trials continue or stop).

    >>> from hpsearch.strategies.samplers import RandomSampler
    >>> from hpsearch.strategies.schedulers import FullBudget
    >>> strategy = Strategy(RandomSampler(), FullBudget())
    >>> strategy.needs_curves
    False
    """

    sampler: Sampler
    scheduler: Scheduler

    @property
    def needs_curves(self) -> bool:
        """Whether ``to_stop`` reads the trials' learning curves (loading them costs a query); a user
        scheduler says so with a true ``needs_curves`` attribute."""
        return isinstance(self.scheduler, MedianStopping) or bool(getattr(self.scheduler, "needs_curves", False))

    def prepare(self) -> None:
        """Import what planning needs (Optuna, scipy: seconds) before the first trial, not while workers wait."""
        sampler = self.sampler.inner if isinstance(self.sampler, SeededSampler) else self.sampler
        if isinstance(sampler, OptunaSampler):
            sampler.prepare()

    def plan(self, context: StudyContext, history: Sequence[TrialView], slots: int) -> list[NewTrial]:
        """Trials to queue now, at most ``slots``."""
        return self.scheduler.plan(context, history, self.sampler, slots)

    def is_finished(self, context: StudyContext, history: Sequence[TrialView]) -> bool:
        """No trial will ever be planned again."""
        return self.scheduler.is_finished(context, history, self.sampler)

    def to_stop(self, context: StudyContext, history: Sequence[TrialView]) -> list[int]:
        """Numbers of running trials to stop now."""
        return self.scheduler.to_stop(context, history)
