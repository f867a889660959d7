from __future__ import annotations

from hpsearch.objectives import dominates, pareto_front


def test_dominance_respects_each_direction() -> None:
    assert dominates([0.9, 100], [0.8, 200], ["max", "min"])
    assert not dominates([0.9, 300], [0.8, 200], ["max", "min"])
    assert not dominates([0.9, 100], [0.9, 100], ["max", "min"])


def test_front_keeps_exactly_the_non_dominated() -> None:
    points = [("a", [0.9, 300]), ("b", [0.8, 100]), ("c", [0.7, 200]), ("d", [0.95, 300]), ("e", [0.8, 100])]
    assert pareto_front(points, ["max", "min"]) == ["b", "d", "e"]
