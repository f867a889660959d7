"""Pareto fronts of multi-objective studies: which completed trials no other completed trial beats in every
objective. The dominance test is pure Python; :func:`pareto_trials` reads the trials from the store (reads
only, like the rest of ``analysis``).

Example::

    >>> pareto_front([("a", [0.9, 300]), ("b", [0.8, 100]), ("c", [0.7, 200])], ["max", "min"])
    ['a', 'b']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from hpsearch.store import Store, StudyRecord, TrialRecord, TrialState

T = TypeVar("T")


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one.

    Example: ``dominates([0.9, 100], [0.8, 200], ["max", "min"])`` is ``True``.
    """
    signed = [(x, y) if d == "min" else (-x, -y) for x, y, d in zip(a, b, directions, strict=True)]
    return all(x <= y for x, y in signed) and any(x < y for x, y in signed)


def pareto_front(items: Sequence[tuple[T, Sequence[float]]], directions: Sequence[str]) -> list[T]:
    """The items no other item dominates, in their given order (equal points all stay).

    Example: ``pareto_front([("a", [1.0]), ("b", [2.0])], ["max"])`` is ``["b"]``.
    """
    return [
        item
        for item, values in items
        if not any(dominates(other, values, directions) for _, other in items if other is not values)
    ]


def pareto_trials(store: Store, study: StudyRecord) -> list[TrialRecord]:
    """Completed trials no other completed trial beats in every objective, by trial number (trials missing
    an objective's value are left out).

    Example::

        >>> [t.number for t in pareto_trials(store, store.study("size_vs_accuracy"))]
        [3, 7, 12]
    """
    directions = [o["direction"] for o in study.objectives or []]
    scored = [
        (t, t.objective_values)
        for t in store.trials(study.id)
        if t.state == TrialState.COMPLETED and t.objective_values and None not in t.objective_values
    ]
    return pareto_front(scored, directions)  # type: ignore[arg-type]  # None was filtered out above
