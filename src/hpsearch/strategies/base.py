"""What a strategy sees and says. A strategy is a sampler (which parameters) times a scheduler (how many
epochs, which trials continue or stop). Both are rebuilt from the database on every coordinator tick:
they keep no state of their own, so a restarted coordinator carries on where the last one stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpsearch.space import SearchSpace, Value


@dataclass(frozen=True)
class TrialView:
    """A trial as the strategies see it: no SQL, no keras."""

    number: int
    state: str
    params: dict[str, Value]
    objective: float | None
    best_epoch: int | None
    epochs_done: int
    budget_epochs: int
    initial_epoch: int = 0
    parent_number: int | None = None
    bracket: int | None = None
    rung: int | None = None
    # The objective after each epoch (1-based), for schedulers that stop trials early.
    curve: dict[int, float] = field(default_factory=dict)
    # Every objective's value (multi-objective studies), in the study's order.
    values: tuple[float | None, ...] | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETED", "PRUNED", "FAILED")


@dataclass(frozen=True)
class NewTrial:
    params: dict[str, Value]
    budget_epochs: int
    initial_epoch: int = 0
    parent_number: int | None = None
    bracket: int | None = None
    rung: int | None = None


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
