"""A grid is counted, not enumerated, before it is capped (issue 24): 10**12 combinations with max_trials = 5
plan 5 at once; without a cap such a grid is refused in one line."""

from __future__ import annotations

from typing import Any

import pytest

from hpsearch.space import GRID_MAX, SearchSpace
from hpsearch.strategies import StudyContext, planned_trials


def _int(name: str, low: int, high: int, step: int | None = None, log: bool = False) -> dict[str, Any]:
    sampling = "log" if log else "linear"
    config = {"name": name, "min_value": low, "max_value": high, "step": step, "sampling": sampling}
    return {"class_name": "Int", "config": config}


def _context(*entries: dict[str, Any]) -> StudyContext:
    return StudyContext(SearchSpace({"space": list(entries)}), "max", 0, None, 3)


def test_a_huge_grid_capped_by_max_trials_is_planned_without_enumeration() -> None:
    context = _context(_int("a", 1, 10**6), _int("b", 1, 10**6))
    assert planned_trials({"algorithm": "grid", "max_trials": 5, "max_epochs": 3}, context) == 5


def test_a_huge_grid_without_a_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 1,000,000: set max_trials"):
        planned_trials({"algorithm": "grid", "max_epochs": 3}, _context(_int("a", 0, GRID_MAX)))


def test_counts_match_the_enumeration() -> None:
    floats = {"class_name": "Float", "config": {"name": "f", "min_value": 0.0, "max_value": 1.0, "step": 0.1}}
    choice = {"class_name": "Choice", "config": {"name": "c", "values": ["x", "y", "z"]}}
    logs = _int("l", 2, 64, step=2, log=True)
    space = SearchSpace({"space": [_int("a", 1, 7, step=3), floats, choice, logs, _int("n", 1, 5)]})
    for param in space.params:
        assert param.grid_count() == len(param.grid_values()), param.name
    assert space.grid_size() == sum(1 for _ in space.grid())
    assert space.grid_size(limit=4) == 4


def test_a_conditional_grid_is_counted_exactly_up_to_the_cap() -> None:
    flag = {"class_name": "Boolean", "config": {"name": "extra"}}
    cond = [{"class_name": "Parent", "config": {"name": "extra", "values": [True]}}]
    inner = {"class_name": "Int", "config": {**_int("k", 1, 3)["config"], "conditions": cond}}
    space = SearchSpace({"space": [flag, inner]})
    assert space.grid_size() == 4 == sum(1 for _ in space.grid())  # extra=False once, extra=True x 3
    assert space.grid_size(limit=2) == 2
