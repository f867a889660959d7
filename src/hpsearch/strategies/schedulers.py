"""Schedulers: how many epochs each trial gets and when the study has planned its last trial."""

from __future__ import annotations

from collections.abc import Sequence

from hpsearch.strategies.base import NewTrial, Sampler, StudyContext, TrialView


class FullBudget:
    """Every trial trains up to max_epochs (the study's callbacks, such as EarlyStopping, may end it sooner)."""

    def plan(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler, slots: int) -> list[NewTrial]:
        count = min(slots, context.max_trials - len(history))
        if count <= 0:
            return []
        return [NewTrial(params, context.max_epochs) for params in sampler.sample(context, history, count)]

    def is_finished(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> bool:
        return len(history) >= context.max_trials or not sampler.sample(context, history, 1)
