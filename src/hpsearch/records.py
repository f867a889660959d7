"""Records shared by the strategies and the store, with no SQL and no keras: what a strategy sees of a trial
(:class:`TrialView`) and what it asks to queue (:class:`NewTrial`). Both sides import them from here, so the
store never imports the strategies and a worker never loads a sampler.

Example::

    >>> from hpsearch.records import NewTrial
    >>> NewTrial({"units": 32}, budget_epochs=3).initial_epoch
    0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hpsearch.space import Value


@dataclass(frozen=True)
class TrialView:
    """A trial as the strategies see it: no SQL, no keras.

    Example::

        >>> TrialView(number=0, state="COMPLETED", params={}, objective=0.5, best_epoch=1,
        ...           epochs_done=1, budget_epochs=1).finished
        True
    """

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
    """A trial a strategy asks to queue: its parameters and epoch budget (and, for successive halving, the
    trial it continues and its bracket and rung).

    Example::

        >>> NewTrial({"lr": 0.01}, budget_epochs=9, initial_epoch=3, parent_number=4, bracket=0, rung=1).rung
        1
    """

    params: dict[str, Value]
    budget_epochs: int
    initial_epoch: int = 0
    parent_number: int | None = None
    bracket: int | None = None
    rung: int | None = None


__all__ = ["NewTrial", "TrialView"]
