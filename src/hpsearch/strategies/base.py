"""What a strategy sees and says. A strategy is a sampler (which parameters) times a scheduler (how many
epochs, which trials continue or stop). Both are rebuilt from the database on every coordinator tick:
they keep no state of their own, so a restarted coordinator carries on where the last one stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpsearch.records import NewTrial, TrialView
from hpsearch.space import SearchSpace, Value


@dataclass(frozen=True)
class StudyContext:
    space: SearchSpace
    direction: str  # "min" | "max"
    seed: int
    max_trials: int | None
    max_epochs: int
    options: dict[str, Any] = field(default_factory=dict)
    # The direction of every objective when there are several (the first equals ``direction``).
    directions: tuple[str, ...] = ()


class Sampler(Protocol):
    def sample(self, context: StudyContext, history: Sequence[TrialView], count: int) -> list[dict[str, Value]]:
        """Up to ``count`` new parameter sets; fewer when the space is exhausted."""
        ...


class Scheduler(Protocol):
    def plan(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler, slots: int) -> list[NewTrial]:
        """Trials to queue now, at most ``slots``."""
        ...

    def is_finished(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> bool:
        """No trial will ever be planned again (running trials may still be finishing)."""
        ...

    def to_stop(self, context: StudyContext, history: Sequence[TrialView]) -> list[int]:
        """Numbers of running trials to stop now (pruned)."""
        ...
