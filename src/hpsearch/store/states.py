"""The trial state machine, in one place: which state a trial (and a final job) may move to from which.

Every write that changes a trial's state takes its guard from :data:`TRANSITIONS` (the SQL ``WHERE state
...`` of claim, finish, release, retry, lease expiry and closing the queue is built by :func:`guard`) or
checks it with :func:`check_transition` before it writes (``guard`` checks the
transitions a statement makes when the statement is built), so a refused transition changes nothing::

    QUEUED  --claim--------------------------> RUNNING
    QUEUED  --close_queued (budget spent)----> PRUNED
    RUNNING --finish-------------------------> COMPLETED | PRUNED | FAILED
    RUNNING --release (study stopped)--------> QUEUED
    RUNNING --retry / lease expiry-----------> QUEUED, or FAILED past max_retries
    COMPLETED, PRUNED, FAILED: final

Final jobs (promotions) follow :data:`FINAL_JOB_TRANSITIONS`: the same, plus FAILED -> QUEUED (promoting the
same trial again resumes it) and no PRUNED.

Example::

    >>> from hpsearch.store.states import TRANSITIONS, TrialState, allowed
    >>> allowed(TrialState.QUEUED, TrialState.RUNNING), allowed(TrialState.COMPLETED, TrialState.QUEUED)
    (True, False)
    >>> sorted(state.value for state in TRANSITIONS[TrialState.RUNNING])
    ['COMPLETED', 'FAILED', 'PRUNED', 'QUEUED']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpsearch.store.models import FINISHED_STATES, TrialState

Table = Mapping[TrialState, frozenset[TrialState]]

TRANSITIONS: Table = {
    TrialState.QUEUED: frozenset({TrialState.RUNNING, TrialState.PRUNED}),
    TrialState.RUNNING: frozenset({TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED, TrialState.QUEUED}),
    TrialState.COMPLETED: frozenset(),
    TrialState.PRUNED: frozenset(),
    TrialState.FAILED: frozenset(),
}

FINAL_JOB_TRANSITIONS: Table = {
    TrialState.QUEUED: frozenset({TrialState.RUNNING}),
    TrialState.RUNNING: frozenset({TrialState.COMPLETED, TrialState.FAILED, TrialState.QUEUED}),
    TrialState.COMPLETED: frozenset(),
    TrialState.PRUNED: frozenset(),
    TrialState.FAILED: frozenset({TrialState.QUEUED}),
}


class TransitionError(ValueError):
    """A state change the table refuses (a caller's mistake, e.g. finishing a trial as QUEUED)."""


def allowed(old: str, new: str, table: Table = TRANSITIONS) -> bool:
    """Whether ``old -> new`` is in ``table``. Example: ``allowed("RUNNING", "COMPLETED")`` is True."""
    return TrialState(new) in table.get(TrialState(old), frozenset())


def check_transition(old: str, new: str, table: Table = TRANSITIONS, what: str = "trial") -> None:
    """Raise :class:`TransitionError` unless ``old -> new`` is allowed.

    Example::

        >>> check_transition("FAILED", "RUNNING")
        Traceback (most recent call last):
        ...
        hpsearch.store.states.TransitionError: trial: FAILED -> RUNNING is not an allowed state change
    """
    if not allowed(old, new, table):
        raise TransitionError(f"{what}: {old} -> {new} is not an allowed state change")


def check_finished(state: str) -> None:
    """A trial's outcome (``finish``) must be a final state reachable from RUNNING."""
    if state not in FINISHED_STATES:
        raise TransitionError(f"trial outcome: {state} is not one of {', '.join(FINISHED_STATES)}")
    check_transition(TrialState.RUNNING, state)


def sources(*targets: TrialState, table: Table = TRANSITIONS) -> list[TrialState]:
    """The states from which every one of ``targets`` may be reached, in table order."""
    return [old for old, news in table.items() if all(t in news for t in targets)]


def guard(column: Any, old: TrialState, *new: TrialState, table: Table = TRANSITIONS) -> Any:
    """The SQL condition ``column = old`` of a write that moves a row from ``old`` to one of ``new``, after
    checking those transitions against ``table``: a statement for a refused transition cannot be built.

    Example::

        >>> from hpsearch.store.models import Trial
        >>> str(guard(Trial.state, TrialState.QUEUED, TrialState.RUNNING))
        'trials.state = :state_1'
    """
    for target in new:
        check_transition(old, target, table)
    return column == old


__all__ = [
    "FINAL_JOB_TRANSITIONS",
    "TRANSITIONS",
    "TransitionError",
    "TrialState",
    "allowed",
    "check_finished",
    "check_transition",
    "guard",
    "sources",
]
