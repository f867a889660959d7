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


def test_the_model_sees_the_best_and_the_most_recent_trials_within_its_window() -> None:
    from hpsearch.strategies.samplers import OptunaSampler

    history = [
        TrialView(
            number=i,
            state="COMPLETED" if i % 10 else "FAILED",
            params={"act": "relu", "units": 8},
            objective=float((i * 37) % 101),
            best_epoch=1,
            epochs_done=1,
            budget_epochs=4,
        )
        for i in range(1000)
    ]
    completed = [t for t in history if t.state == "COMPLETED"]
    seen = OptunaSampler("tpe", window=60)._observed(history, "max")
    assert len(seen) == 60 and [t.number for t in seen] == sorted(t.number for t in seen)
    best = sorted(completed, key=lambda t: (-(t.objective or 0), t.number))[:25]
    assert {t.number for t in best} <= {t.number for t in seen}
    others = [t for t in seen if t.number not in {b.number for b in best}]
    assert [t.number for t in others] == [t.number for t in completed if t not in best][-len(others) :]
    assert OptunaSampler("tpe", window=60)._observed(history[:50], "max") == [
        t for t in history[:50] if t.state == "COMPLETED"
    ]
    # Minimising keeps the lowest objectives instead.
    lowest = sorted(completed, key=lambda t: (t.objective or 0, t.number))[:25]
    assert {t.number for t in lowest} <= {t.number for t in OptunaSampler("tpe", window=60)._observed(history, "min")}
    # A plan still works past the window, with the window from the study's options.
    strategy = make_strategy({"algorithm": "tpe", "model_window": 30})
    assert strategy.sampler.window == 30  # type: ignore[attr-defined]
    assert len(strategy.plan(context(2000), completed, 2)) == 2
