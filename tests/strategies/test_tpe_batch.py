"""The batch TPE (strategies.tpe) plans exactly what Optuna's sampler on an in-memory study plans: the same
suggestions, value for value, for the same seed and history, and it steps aside where it does not apply."""

from __future__ import annotations

import math
import random
import sys
from typing import Any

import pytest

from hpsearch.space import SearchSpace
from hpsearch.strategies import StudyContext, TrialView, make_strategy
from hpsearch.strategies import tpe as tpe_module

SPACE = SearchSpace(
    {
        "space": [
            {
                "class_name": "Float",
                "config": {"name": "lr", "conditions": [], "min_value": 1e-4, "max_value": 1e-1, "step": None,
                           "sampling": "log"},
            },
            {
                "class_name": "Int",
                "config": {"name": "units", "conditions": [], "min_value": 16, "max_value": 512, "step": 16,
                           "sampling": "linear"},
            },
            {
                "class_name": "Float",
                "config": {"name": "dropout", "conditions": [], "min_value": 0.0, "max_value": 0.5, "step": None,
                           "sampling": "linear"},
            },
            {"class_name": "Choice", "config": {"name": "act", "conditions": [], "values": ["relu", "tanh", "gelu"]}},
            {"class_name": "Boolean", "config": {"name": "bn", "conditions": [], "default": False}},
            {"class_name": "Choice", "config": {"name": "opt", "conditions": [], "values": ["adam"]}},
            {"class_name": "Fixed", "config": {"name": "seed_fixed", "conditions": [], "value": 7}},
        ]
    }
)  # fmt: skip


BUILD = tpe_module.TPEBatch.build  # the real one: plan() below patches the class's


def history(finished: int, pending: int, seed: int = 0, ties: bool = False) -> list[TrialView]:
    rng = random.Random(seed)
    trials = []
    for number in range(finished + pending):
        params = SPACE.sample(rng)
        done = number < finished
        objective = float(number % 4) if ties else rng.random()
        trials.append(
            TrialView(
                number=number,
                state=("COMPLETED" if number % 7 else "FAILED") if done else "RUNNING",
                params=params,
                objective=objective if done else None,
                best_epoch=3 if done else None,
                epochs_done=3 if done else 0,
                budget_epochs=3,
            )
        )
    return trials


def plan(trials: list[TrialView], count: int, direction: str, fast: bool, monkeypatch: Any) -> list[Any]:
    context = StudyContext(space=SPACE, direction=direction, seed=5, max_trials=None, max_epochs=3)
    used: list[bool] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        batch = BUILD(*args, **kwargs) if fast else None
        used.append(batch is not None)
        return batch

    monkeypatch.setattr(tpe_module.TPEBatch, "build", spy)
    planned = make_strategy({"algorithm": "tpe", "n_startup_trials": 3}).plan(context, trials, count)
    assert used == [fast]  # the path under test is the one that planned
    return [p.params for p in planned]


def same(fast: list[Any], slow: list[Any]) -> bool:
    """Equal suggestions: the same parameters, choices and integers, and floats equal but for the last
    bits (NumPy's vectorised exp and log may round an element's last bit by the length of its array)."""
    return len(fast) == len(slow) and all(
        a.keys() == b.keys()
        and all(
            math.isclose(a[k], b[k], rel_tol=1e-12)
            if isinstance(a[k], float)
            else a[k] == b[k] and type(a[k]) is type(b[k])
            for k in a
        )
        for a, b in zip(fast, slow, strict=True)
    )


@pytest.mark.parametrize(
    ("finished", "pending", "count", "direction", "ties"),
    [
        (4, 0, 1, "min", False),
        (12, 3, 5, "max", False),
        (150, 16, 20, "min", True),  # ties among the objectives: the earlier trial ranks first, as in Optuna
        (260, 20, 18, "max", False),  # past the model window (200) and past 25 trials (ramped weights)
    ],
)
def test_the_batch_suggests_what_the_optuna_study_suggests(
    finished: int, pending: int, count: int, direction: str, ties: bool, monkeypatch: Any
) -> None:
    trials = history(finished, pending, ties=ties)
    fast = plan(trials, count, direction, True, monkeypatch)
    slow = plan(trials, count, direction, False, monkeypatch)
    assert len(fast) == count
    assert same(fast, slow)
    assert all(set(p) == {"lr", "units", "dropout", "act", "bn", "opt", "seed_fixed"} for p in fast)
    assert len({(p["lr"], p["units"]) for p in fast}) == count  # the constant liar spreads a batch


def test_a_restarted_planner_plans_the_same_batch(monkeypatch: Any) -> None:
    """Stateless: the same history gives the same batch, whatever was planned before."""
    trials = history(50, 4)
    first = plan(trials, 6, "min", True, monkeypatch)
    plan(history(80, 2, seed=1), 3, "max", True, monkeypatch)
    assert plan(trials, 6, "min", True, monkeypatch) == first  # bit for bit
    assert same(plan(trials, 2, "min", True, monkeypatch), first[:2])  # a smaller batch starts the same


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # group=True
def test_the_batch_steps_aside_where_it_does_not_apply() -> None:
    import optuna

    from hpsearch.strategies.samplers import distribution

    dists = {p.name: distribution(p) for p in SPACE.params if p.kind != "fixed"}
    sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=0, multivariate=True, constant_liar=True)
    trials = history(10, 0)
    observed = [({k: v for k, v in t.params.items() if k in dists}, t.objective or 0.0) for t in trials]
    assert tpe_module.TPEBatch.build(sampler, dists, observed, [], "min") is not None
    assert tpe_module.TPEBatch.build(sampler, dists, [], [], "min") is None  # nothing finished yet
    outside = [({**observed[0][0], "act": "selu"}, 1.0), *observed[1:]]
    assert tpe_module.TPEBatch.build(sampler, dists, outside, [], "min") is None  # Optuna's path raises
    nan = [(observed[0][0], float("nan")), *observed[1:]]
    assert tpe_module.TPEBatch.build(sampler, dists, nan, [], "min") is None
    grouped = optuna.samplers.TPESampler(seed=1, n_startup_trials=0, multivariate=True, group=True)
    assert tpe_module.TPEBatch.build(grouped, dists, observed, [], "min") is None


def test_other_spaces_too(monkeypatch: Any) -> None:
    """Choices only (no truncated normal to draw), and a log-scaled integer (a discrete log-normal)."""
    spaces = [
        [{"class_name": "Choice", "config": {"name": "a", "conditions": [], "values": [1, 2, 3, 4]}},
         {"class_name": "Boolean", "config": {"name": "b", "conditions": [], "default": False}}],
        [{"class_name": "Int", "config": {"name": "n", "conditions": [], "min_value": 1, "max_value": 1024,
                                          "step": None, "sampling": "log"}},
         {"class_name": "Float", "config": {"name": "x", "conditions": [], "min_value": -1.0, "max_value": 1.0,
                                            "step": 0.25, "sampling": "linear"}}],
    ]  # fmt: skip
    for entries in spaces:
        monkeypatch.setattr(sys.modules[__name__], "SPACE", SearchSpace({"space": entries}))
        trials = history(60, 5)
        fast = plan(trials, 12, "min", True, monkeypatch)
        assert same(fast, plan(trials, 12, "min", False, monkeypatch)) and len(fast) == 12
