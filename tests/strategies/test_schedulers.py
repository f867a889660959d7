from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from hpsearch.space import SearchSpace
from hpsearch.strategies import NewTrial, StudyContext, TrialView, make_strategy
from hpsearch.strategies.schedulers import ASHA, Hyperband, MedianStopping

from ..conftest import UNIT_X_SPACE

SPACE = SearchSpace(UNIT_X_SPACE)


def context(max_epochs: int, max_trials: int | None = None, direction: str = "max") -> StudyContext:
    return StudyContext(space=SPACE, direction=direction, seed=1, max_trials=max_trials, max_epochs=max_epochs)


def lineage_score(index: int, parent_score: float | None) -> float:
    """A score both implementations can compute: new configurations get a pseudo-random score from their
    creation index; a promoted trial improves on its parent."""
    return parent_score + 0.01 if parent_score is not None else (index * 0.6180339887) % 1.0


def keras_tuner_schedule(max_epochs: int, factor: int, iterations: int, tmp_path: Path) -> list[tuple]:  # type: ignore[type-arg]
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("score", "max"),
        max_epochs=max_epochs,
        factor=factor,
        hyperband_iterations=iterations,
        seed=1,
        hyperparameters=hp,
    )
    oracle._set_project_dir(str(tmp_path), "kt")
    order: dict[str, int] = {}
    scores: dict[str, float] = {}
    schedule = []
    while True:
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            return schedule
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        order[trial.trial_id] = len(order)
        scores[trial.trial_id] = lineage_score(len(order) - 1, scores[parent] if parent else None)
        schedule.append(
            (
                values["tuner/bracket"],
                values["tuner/round"],
                values["tuner/epochs"],
                values["tuner/initial_epoch"],
                order[parent] if parent else None,
            )
        )
        oracle.update_trial(trial.trial_id, {"score": scores[trial.trial_id]})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def our_schedule(strategy, study: StudyContext) -> tuple[list[tuple], list[TrialView]]:  # type: ignore[no-untyped-def, type-arg]
    history: list[TrialView] = []
    while True:
        planned = strategy.plan(study, history, 1)
        if not planned:
            assert strategy.is_finished(study, history)
            return [(t.bracket, t.rung, t.budget_epochs, t.initial_epoch, t.parent_number) for t in history], history
        new: NewTrial = planned[0]
        parent = history[new.parent_number].objective if new.parent_number is not None else None
        history.append(
            TrialView(
                number=len(history),
                state="COMPLETED",
                params=new.params,
                objective=lineage_score(len(history), parent),
                best_epoch=new.budget_epochs,
                epochs_done=new.budget_epochs,
                budget_epochs=new.budget_epochs,
                initial_epoch=new.initial_epoch,
                parent_number=new.parent_number,
                bracket=new.bracket,
                rung=new.rung,
            )
        )


@pytest.mark.parametrize(("max_epochs", "factor", "iterations"), [(9, 3, 1), (27, 3, 2), (10, 2, 1), (81, 3, 1)])
def test_hyperband_schedule_equals_keras_tuners(max_epochs: int, factor: int, iterations: int, tmp_path: Path) -> None:
    expected = keras_tuner_schedule(max_epochs, factor, iterations, tmp_path)
    strategy = make_strategy({"algorithm": "hyperband", "factor": factor, "hyperband_iterations": iterations})
    ours, _ = our_schedule(strategy, context(max_epochs))
    brackets = Hyperband(factor, iterations).num_brackets(max_epochs)
    as_keras_tuner = [(brackets - 1 - b % brackets, r, e, i, p) for b, r, e, i, p in ours]
    assert as_keras_tuner == expected
    assert len(ours) == Hyperband(factor, iterations).total_trials(max_epochs)


def test_bohb_is_tpe_over_the_same_hyperband_schedule(tmp_path: Path) -> None:
    hyperband, _ = our_schedule(make_strategy({"algorithm": "hyperband"}), context(9))
    bohb, history = our_schedule(make_strategy({"algorithm": "bohb", "n_startup_trials": 3}), context(9))
    assert bohb == hyperband
    fresh = [t.params["x"] for t in history if t.parent_number is None]
    assert len(set(fresh)) == len(fresh)


def test_asha_promotes_the_top_third_without_waiting() -> None:
    strategy = make_strategy({"algorithm": "asha", "factor": 3, "min_epochs": 1})
    _, history = our_schedule(strategy, context(9, max_trials=30))
    rungs = ASHA(3, 1).rung_epochs(9)
    assert rungs == [1, 3, 9]
    assert sum(t.rung == 0 for t in history) == 30
    for trial in history:
        assert trial.budget_epochs == rungs[trial.rung]
        if trial.parent_number is not None:
            parent = history[trial.parent_number]
            assert parent.rung == trial.rung - 1 and trial.initial_epoch == rungs[parent.rung]
            # At promotion time the parent was in the top 1/3 of its rung's completed trials.
            peers = [t for t in history[: trial.number] if t.rung == parent.rung]
            better = sum((t.objective or 0) > (parent.objective or 0) for t in peers)
            assert better < len(peers) // 3
    # Asynchronous: the first promotion comes as soon as three configurations finished, not after all 30.
    first_promotion = next(t.number for t in history if t.rung == 1)
    assert first_promotion == 3


def test_median_stopping_stops_only_trials_below_the_median() -> None:
    def view(number: int, state: str, curve: dict[int, float]) -> TrialView:
        return TrialView(
            number=number,
            state=state,
            params={},
            objective=max(curve.values()),
            best_epoch=None,
            epochs_done=max(curve),
            budget_epochs=5,
            curve=curve,
        )

    finished = [view(i, "COMPLETED", {1: 0.5 + i * 0.05, 2: 0.6 + i * 0.05}) for i in range(5)]  # median at 2: 0.7
    running = [
        view(5, "RUNNING", {1: 0.9, 2: 0.65}),
        view(6, "RUNNING", {1: 0.1, 2: 0.2}),
        view(7, "RUNNING", {1: 0.2}),
    ]
    scheduler = MedianStopping(make_strategy({"algorithm": "random"}).scheduler, grace_epochs=2)
    # Trial 5's best so far (0.9) beats the median; trial 6 does not; trial 7 is inside its grace period.
    assert scheduler.to_stop(context(5), finished + running) == [6]
    assert MedianStopping(scheduler.inner, min_trials=6).to_stop(context(5), finished + running) == []


# The GP sampler (torch) is among the suite's longest tests: slow.
@pytest.mark.parametrize("kind", ["tpe", pytest.param("bayesian", marks=pytest.mark.slow)])
def test_model_based_samplers_are_deterministic_and_spread_pending_trials(kind: str) -> None:
    strategy = make_strategy({"algorithm": kind, "n_startup_trials": 4})
    study = context(3, max_trials=100)
    history = [
        TrialView(
            number=i,
            state="COMPLETED",
            params={"x": x},
            objective=-((x - 0.3) ** 2),
            best_epoch=3,
            epochs_done=3,
            budget_epochs=3,
        )
        for i, x in enumerate([0.05, 0.5, 0.9, 0.2, 0.35, 0.7])
    ]
    first = strategy.plan(study, history, 16)
    assert [p.params for p in first] == [p.params for p in strategy.plan(study, history, 16)]
    xs = sorted(p.params["x"] for p in first)
    assert all(0.0 <= x <= 1.0 for x in xs)
    # Parallel-aware: sixteen idle workers do not receive sixteen near-identical points.
    assert min(b - a for a, b in itertools.pairwise(xs)) > 1e-6
    assert xs[-1] - xs[0] > 0.05


def test_sobol_start_up_points_cover_the_space() -> None:
    strategy = make_strategy({"algorithm": "tpe", "n_startup_trials": 8})
    xs = sorted(p.params["x"] for p in strategy.plan(context(3, max_trials=8), [], 8))
    # A scrambled Sobol sequence puts one point in each eighth of [0, 1).
    assert [math.floor(x * 8) for x in xs] == list(range(8))
