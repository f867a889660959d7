"""Search strategies = sampler x scheduler. Never imports keras or SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpsearch.strategies.base import NewTrial, Sampler, Scheduler, StudyContext, TrialView
from hpsearch.strategies.samplers import GridSampler, RandomSampler
from hpsearch.strategies.schedulers import FullBudget


@dataclass(frozen=True)
class Strategy:
    sampler: Sampler
    scheduler: Scheduler

    def plan(self, context: StudyContext, history: Sequence[TrialView], slots: int) -> list[NewTrial]:
        return self.scheduler.plan(context, history, self.sampler, slots)

    def is_finished(self, context: StudyContext, history: Sequence[TrialView]) -> bool:
        return self.scheduler.is_finished(context, history, self.sampler)


def make_strategy(algorithm: str) -> Strategy:
    """The strategy for a study file's ``search.algorithm``."""
    samplers: dict[str, Sampler] = {"random": RandomSampler(), "grid": GridSampler()}
    return Strategy(samplers[algorithm], FullBudget())


__all__ = ["NewTrial", "Sampler", "Scheduler", "Strategy", "StudyContext", "TrialView", "make_strategy"]
