from __future__ import annotations

from hpsearch.space import SearchSpace
from hpsearch.strategies import StudyContext, TrialView, make_strategy

SPACE = SearchSpace(
    {
        "space": [
            {"class_name": "Choice", "config": {"name": "act", "conditions": [], "values": ["relu", "tanh"]}},
            {
                "class_name": "Int",
                "config": {
                    "name": "units",
                    "conditions": [],
                    "min_value": 8,
                    "max_value": 24,
                    "step": 8,
                    "sampling": "linear",
                },
            },
        ]
    }
)


def context(max_trials: int = 10) -> StudyContext:
    return StudyContext(space=SPACE, direction="max", seed=3, max_trials=max_trials, max_epochs=4)


def as_history(plans: list) -> list[TrialView]:  # type: ignore[type-arg]
    return [
        TrialView(
            number=i,
            state="COMPLETED",
            params=p.params,
            objective=None,
            best_epoch=None,
            epochs_done=0,
            budget_epochs=p.budget_epochs,
        )
        for i, p in enumerate(plans)
    ]


def test_random_is_deterministic_given_seed_and_history() -> None:
    strategy = make_strategy({"algorithm": "random"})
    first = strategy.plan(context(), [], 3)
    assert first == strategy.plan(context(), [], 3)
    assert all(p.budget_epochs == 4 and p.initial_epoch == 0 for p in first)


def test_random_never_repeats_a_configuration_and_stops_when_exhausted() -> None:
    strategy = make_strategy({"algorithm": "random"})
    history: list[TrialView] = []
    while not strategy.is_finished(context(100), history):
        planned = strategy.plan(context(100), history, 2)
        assert planned
        history = as_history([*[_Plan(t.params) for t in history], *planned])
    keys = [tuple(sorted(t.params.items())) for t in history]
    assert len(keys) == len(set(keys)) == 6  # 2 activations x 3 unit sizes


class _Plan:
    def __init__(self, params: dict) -> None:  # type: ignore[type-arg]
        self.params, self.budget_epochs = params, 4


def test_grid_covers_the_grid_once_in_order() -> None:
    strategy = make_strategy({"algorithm": "grid"})
    plans = strategy.plan(context(), [], 100)
    assert [(p.params["act"], p.params["units"]) for p in plans] == [
        ("relu", 8),
        ("relu", 16),
        ("relu", 24),
        ("tanh", 8),
        ("tanh", 16),
        ("tanh", 24),
    ]
    history = as_history(plans[:4])
    assert [p.params for p in strategy.plan(context(), history, 100)] == [p.params for p in plans[4:]]
    assert strategy.is_finished(context(), as_history(plans))


def test_full_budget_never_plans_beyond_max_trials() -> None:
    strategy = make_strategy({"algorithm": "random"})
    plans = strategy.plan(context(max_trials=3), [], 10)
    assert len(plans) == 3
    history = as_history(plans)
    assert strategy.plan(context(max_trials=3), history, 10) == []
    assert strategy.is_finished(context(max_trials=3), history)
