"""The algorithm registry: every built-in name builds, self-sized algorithms plan what they planned before the
registry, defaults come from one place, and an algorithm registered from Python is a valid [search] algorithm."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from hpsearch.errors import SpecError, UserCodeError
from hpsearch.space import SearchSpace
from hpsearch.spec import validate_spec
from hpsearch.strategies import (
    NewTrial,
    SearchOptions,
    Strategy,
    StudyContext,
    algorithm,
    algorithms,
    make_strategy,
    planned_trials,
    register_algorithm,
    unregister_algorithm,
)
from hpsearch.strategies.samplers import GridSampler, OptunaSampler, RandomSampler
from hpsearch.strategies.schedulers import ASHA, FullBudget, Hyperband, MedianStopping

from ..conftest import UNIT_X_SPACE

BUILT_IN = ["random", "grid", "bayesian", "tpe", "hyperband", "asha", "bohb"]
GRID_SPACE = {
    "space": [
        {"class_name": "Choice", "config": {"name": "units", "values": [8, 16, 32], "ordered": True}},
        {"class_name": "Boolean", "config": {"name": "bn", "default": False}},
    ],
    "values": {"units": 8, "bn": False},
}


def context(space: dict[str, Any], max_epochs: int = 9, max_trials: int | None = None) -> StudyContext:
    return StudyContext(SearchSpace(space), "max", 0, max_trials, max_epochs)


def planned_before_the_registry(search: Mapping[str, Any], ctx: StudyContext) -> int:
    """planned_trials as written before the registry (commit 02eaf75), defaults restated."""
    cap = search.get("max_trials")
    name = search.get("algorithm", "random")
    if name in ("hyperband", "bohb"):
        total = Hyperband(search.get("factor", 3), search.get("hyperband_iterations", 1)).total_trials(ctx.max_epochs)
    elif name == "grid":
        total = sum(1 for _ in ctx.space.grid())
    else:
        return int(cap)
    return min(total, cap) if cap else total


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names a test registers, removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_algorithm(name)


def test_every_built_in_name_builds_its_sampler_and_scheduler() -> None:
    assert algorithms()[: len(BUILT_IN)] == BUILT_IN
    expected = {
        "random": (RandomSampler, FullBudget),
        "grid": (GridSampler, FullBudget),
        "bayesian": (OptunaSampler, FullBudget),
        "tpe": (OptunaSampler, FullBudget),
        "hyperband": (RandomSampler, Hyperband),
        "asha": (RandomSampler, ASHA),
        "bohb": (OptunaSampler, Hyperband),
    }
    for name, (sampler, scheduler) in expected.items():
        strategy = make_strategy({"algorithm": name})
        assert (type(strategy.sampler), type(strategy.scheduler)) == (sampler, scheduler), name
    assert make_strategy({"algorithm": "bayesian"}).sampler.kind == "bayesian"  # type: ignore[attr-defined]
    pruned = make_strategy({"algorithm": "tpe", "pruner": "median", "grace_epochs": 3}).scheduler
    assert isinstance(pruned, MedianStopping) and pruned.grace_epochs == 3


@pytest.mark.parametrize(
    "search",
    [
        {"algorithm": "grid"},
        {"algorithm": "grid", "max_trials": 4},
        {"algorithm": "hyperband"},
        {"algorithm": "hyperband", "factor": 2, "hyperband_iterations": 3},
        {"algorithm": "bohb", "factor": 4, "max_trials": 10},
        {"algorithm": "random", "max_trials": 7},
        {"algorithm": "asha", "max_trials": 12},
        {"algorithm": "tpe", "max_trials": 30},
    ],
)
@pytest.mark.parametrize("max_epochs", [1, 9, 27, 100])
def test_planned_counts_are_those_before_the_registry(search: dict[str, Any], max_epochs: int) -> None:
    ctx = context(GRID_SPACE, max_epochs)
    assert planned_trials(search, ctx) == planned_before_the_registry(search, ctx)
    assert algorithm(search["algorithm"]).self_sized == (search["algorithm"] in ("grid", "hyperband", "bohb"))


def test_defaults_are_stated_once_in_the_options_model() -> None:
    defaults = SearchOptions()
    asha = make_strategy({"algorithm": "asha"}).scheduler
    assert isinstance(asha, ASHA) and (asha.factor, asha.min_epochs) == (defaults.factor, defaults.min_epochs)
    tpe = make_strategy({"algorithm": "tpe"}).sampler
    assert isinstance(tpe, OptunaSampler)
    assert (tpe.n_startup_trials, tpe.window) == (defaults.n_startup_trials, defaults.model_window)
    spec = validate_spec(
        {
            "study": {"name": "s", "hypermodel": "m:f", "data": "m:d", "objective": "val_loss"},
            "search": {"max_epochs": 3, "max_trials": 2},
        },
        "s.toml",
    )
    assert spec.search.factor == defaults.factor and spec.search.model_window == defaults.model_window


def test_options_are_checked_against_the_entry() -> None:
    def search(**options: Any) -> dict[str, Any]:
        return {
            "study": {"name": "s", "hypermodel": "m:f", "data": "m:d", "objective": "val_loss"},
            "search": {"max_epochs": 3, "max_trials": 2, **options},
        }

    assert validate_spec(search(sampler="mine.py:make"), "s.toml").search.sampler == "mine.py:make"
    assert validate_spec(search(algorithm="tpe", scheduler="mine:Sched"), "s.toml").search.scheduler == "mine:Sched"
    with pytest.raises(SpecError, match="search: option 'sampler' does not apply to algorithm 'tpe'"):
        validate_spec(search(algorithm="tpe", sampler="mine.py:make"), "s.toml")
    with pytest.raises(SpecError, match="search: option 'scheduler' does not apply to algorithm 'hyperband'"):
        validate_spec(search(algorithm="hyperband", scheduler="mine:Sched"), "s.toml")
    with pytest.raises(SpecError, match=r"search.scheduler: must be 'file.py:function' or 'module:function'"):
        validate_spec(search(scheduler="median"), "s.toml")
    with pytest.raises(
        SpecError, match=r"search.sampler: Input should be 'random', 'tpe' or 'bayesian' \(got 'grid'\)"
    ):
        validate_spec(search(algorithm="asha", sampler="grid"), "s.toml")


def test_an_algorithm_registered_from_python(registered: list[str]) -> None:
    def propose(context: StudyContext, history: Any, count: int) -> list[dict[str, Any]]:
        return [{"x": 0.25}] * count

    class TwoEpochs(FullBudget):
        def plan(self, context: StudyContext, history: Any, sampler: Any, slots: int) -> list[NewTrial]:
            return [NewTrial(t.params, 2) for t in super().plan(context, history, sampler, slots)]

    registered.append("quarter")
    register_algorithm("quarter", sampler=propose, scheduler=TwoEpochs, options=["pruner", "grace_epochs"])
    strategy = make_strategy({"algorithm": "quarter", "pruner": "median"})
    assert isinstance(strategy.scheduler, MedianStopping) and strategy.needs_curves
    planned = strategy.plan(context(UNIT_X_SPACE, max_trials=3), [], 5)
    assert [(t.params, t.budget_epochs) for t in planned] == [({"x": 0.25}, 2)] * 3
    data = {
        "study": {"name": "s", "hypermodel": "m:f", "data": "m:d", "objective": "val_loss"},
        "search": {"algorithm": "quarter", "max_epochs": 3, "max_trials": 2, "pruner": "median"},
    }
    assert validate_spec(data, "s.toml").search.algorithm == "quarter"
    with pytest.raises(SpecError, match="option 'factor' does not apply to algorithm 'quarter'"):
        validate_spec({**data, "search": {**data["search"], "factor": 4}}, "s.toml")
    with pytest.raises(SpecError, match=r"Input should be 'random', .* 'auto' or 'quarter' \(got 'nope'\)"):
        validate_spec({**data, "search": {**data["search"], "algorithm": "nope"}}, "s.toml")
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("quarter", sampler=propose)
    unregister_algorithm("quarter")
    with pytest.raises(SpecError, match=r"search.algorithm: Input should be .* 'auto' \(got 'quarter'\)"):
        validate_spec(data, "s.toml")


def test_an_optuna_sampler_object_and_a_builder_registered_from_python(registered: list[str]) -> None:
    import optuna

    registered += ["optuna-random", "built", "self-sized"]
    register_algorithm("optuna-random", sampler=optuna.samplers.RandomSampler(seed=1))
    strategy = make_strategy({"algorithm": "optuna-random"})
    assert isinstance(strategy.sampler, OptunaSampler)
    params = [t.params["x"] for t in strategy.plan(context(UNIT_X_SPACE, max_trials=4), [], 4)]
    assert len(set(params)) == 4 and all(0.0 <= x <= 1.0 for x in params)

    register_algorithm(
        "built", lambda options, base_dir: Strategy(GridSampler(), ASHA(options.factor)), options=["factor"]
    )
    built = make_strategy({"algorithm": "built", "factor": 5}).scheduler
    assert isinstance(built, ASHA) and built.factor == 5
    register_algorithm("self-sized", sampler=RandomSampler(), planned=lambda options, ctx: 42)
    assert planned_trials({"algorithm": "self-sized"}, context(UNIT_X_SPACE)) == 42
    assert planned_trials({"algorithm": "self-sized", "max_trials": 5}, context(UNIT_X_SPACE)) == 5


def test_registration_refuses_what_cannot_work(registered: list[str]) -> None:
    with pytest.raises(ValueError, match=r"no such search options \['colour'\]"):
        register_algorithm("x1", sampler=RandomSampler(), options=["colour"])
    with pytest.raises(UserCodeError, match="algorithm 'x2' sampler: returned int"):
        register_algorithm("x2", sampler=lambda: 42)
    with pytest.raises(UserCodeError, match="algorithm 'x3' scheduler: is str, not a Scheduler"):
        register_algorithm("x3", scheduler="FullBudget")
    with pytest.raises(ValueError, match="give build, or sampler and scheduler, not both"):
        register_algorithm(
            "x4", lambda options, base_dir: Strategy(RandomSampler(), FullBudget()), sampler=RandomSampler()
        )
    assert not {"x1", "x2", "x3", "x4"} & set(algorithms())
    with pytest.raises(ValueError, match="no algorithm 'x1' is registered"):
        make_strategy({"algorithm": "x1"})
