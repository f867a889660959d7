"""Pareto fronts for multi-objective studies. Pure Python."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    signed = [(x, y) if d == "min" else (-x, -y) for x, y, d in zip(a, b, directions, strict=True)]
    return all(x <= y for x, y in signed) and any(x < y for x, y in signed)


def pareto_front(items: Sequence[tuple[T, Sequence[float]]], directions: Sequence[str]) -> list[T]:
    """The items no other item dominates, in their given order."""
    return [
        item
        for item, values in items
        if not any(dominates(other, values, directions) for _, other in items if other is not values)
    ]
