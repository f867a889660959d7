"""The searchers compared by ``search_quality.py``, each driven sequentially (one worker) on an epoch budget.

- hpsearch strategies: ``make_strategy`` + ``plan`` on an in-memory history (what the coordinator does on
  every tick, without the database);
- Keras Tuner oracles driven directly (no Tuner, no keras fit loop of theirs: every method trains through
  the problem's own session, so only the search algorithm differs);
- Optuna TPESampler + HyperbandPruner with an ask/tell loop reporting every epoch.

A trial whose cost (budget_epochs - initial_epoch: a promotion continues from its parent) would overrun the
budget is not started; Optuna's trials are cut at the epoch that spends the budget.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sq_problems import Params, Problem, Session

from hpsearch.space import SearchSpace, Value
from hpsearch.strategies import StudyContext, TrialView, make_strategy


@dataclass
class RunResult:
    problem: str
    method: str
    seed: int
    budget: int
    spent: int = 0
    trials: int = 0
    full_trials: int = 0  # trials that reached max_epochs
    seconds: float = 0.0
    # (epochs spent when it happened, score of the new incumbent): the incumbent is the configuration with
    # the best observed objective among trials trained to max_epochs.
    curve: list[tuple[int, float]] = field(default_factory=list)
    incumbent: dict[str, Value] | None = None


class Recorder:
    def __init__(self, result: RunResult, max_epochs: int) -> None:
        self.result = result
        self.max_epochs = max_epochs
        self.best_objective = -math.inf

    def affordable(self, cost: int) -> bool:
        return self.result.spent + cost <= self.result.budget

    def spend_epoch(self) -> bool:
        """Count one trained epoch; whether another one fits in the budget."""
        self.result.spent += 1
        return self.result.spent < self.result.budget

    def count_epoch(self, epoch: int, value: float) -> bool:
        """``on_epoch`` for trials checked to fit in the budget before they start."""
        self.result.spent += 1
        return True

    def finished(self, session: Session, params: Params, reached_max_epochs: bool, objective: float) -> None:
        self.result.trials += 1
        if not reached_max_epochs:
            return
        self.result.full_trials += 1
        if objective > self.best_objective:
            self.best_objective = objective
            self.result.incumbent = dict(params)
            self.result.curve.append((self.result.spent, session.score(params, objective)))


def _active(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Value]:
    params: dict[str, Value] = {}
    for param in space.params:
        if param.name in values and param.is_active(params):
            params[param.name] = values[param.name]
    return params


def run_hpsearch(search: Mapping[str, Any], problem: Problem, session: Session, recorder: Recorder, seed: int) -> None:
    space = SearchSpace(problem.space)
    full_budget = search["algorithm"] in ("random", "tpe", "bayesian")
    max_trials = recorder.result.budget // problem.max_epochs if full_budget else None
    strategy = make_strategy({**search, "max_trials": max_trials, "max_epochs": problem.max_epochs})
    context = StudyContext(
        space=space, direction="max", seed=seed, max_trials=max_trials, max_epochs=problem.max_epochs
    )
    history: list[TrialView] = []
    states: dict[int, Any] = {}
    while True:
        planned = strategy.plan(context, history, 1)
        if not planned:
            break
        new = planned[0]
        if not recorder.affordable(new.budget_epochs - new.initial_epoch):
            break
        parent = states.get(new.parent_number) if new.parent_number is not None else None
        values, state = session.train(new.params, new.initial_epoch, new.budget_epochs, parent, recorder.count_epoch)
        objective = session.trial_objective(values)
        number = len(history)
        history.append(
            TrialView(
                number=number,
                state="COMPLETED",
                params=dict(new.params),
                objective=objective,
                best_epoch=new.initial_epoch + 1 + values.index(objective),
                epochs_done=new.budget_epochs,
                budget_epochs=new.budget_epochs,
                initial_epoch=new.initial_epoch,
                parent_number=new.parent_number,
                bracket=new.bracket,
                rung=new.rung,
                curve={new.initial_epoch + 1 + i: v for i, v in enumerate(values)},
            )
        )
        if state is not None:
            states[number] = state
        recorder.finished(session, new.params, new.budget_epochs == problem.max_epochs, objective)


KERAS_TUNER_SEED_SPACING = 100_003  # more than the random draws of any run here


def run_keras_tuner(
    kind: str,
    problem: Problem,
    session: Session,
    recorder: Recorder,
    seed: int,
    num_initial_points: int,
    hyperband_iterations: int,
) -> None:
    import keras_tuner as kt

    # Keras Tuner draws hyperparameter k of a run from random.Random(seed + k): runs seeded 1, 2, 3 ... would
    # see the same random values shifted by one position. Spacing the seeds keeps the runs independent.
    seed = seed * KERAS_TUNER_SEED_SPACING
    space = SearchSpace(problem.space)
    hp = kt.HyperParameters.from_config({"space": _fresh(problem.space["space"]), "values": {}})
    objective = kt.Objective("score", "max")
    max_trials = recorder.result.budget // problem.max_epochs
    oracle: Any
    if kind == "random":
        oracle = kt.oracles.RandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed, hyperparameters=hp
        )
    elif kind == "bayesian":
        oracle = kt.oracles.BayesianOptimizationOracle(
            objective=objective,
            max_trials=max_trials,
            num_initial_points=num_initial_points,
            seed=seed,
            hyperparameters=hp,
        )
    else:
        oracle = kt.oracles.HyperbandOracle(
            objective=objective,
            max_epochs=problem.max_epochs,
            factor=3,
            hyperband_iterations=hyperband_iterations,
            seed=seed,
            hyperparameters=hp,
        )
    states: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hpsearch-sq-kt-") as tmp:
        oracle._set_project_dir(tmp, "kt")
        oracle.verbose = 0  # no per-trial table on stdout
        while True:
            trial = oracle.create_trial("tuner0")
            if trial.status == "STOPPED":
                break
            values = trial.hyperparameters.values
            budget = int(values.get("tuner/epochs", problem.max_epochs))
            initial = int(values.get("tuner/initial_epoch", 0))
            parent_id = values.get("tuner/trial_id")
            if not recorder.affordable(budget - initial):
                break
            params = _active(space, values)
            curve, state = session.train(params, initial, budget, states.get(parent_id), recorder.count_epoch)
            score = session.trial_objective(curve)
            if state is not None:
                states[trial.trial_id] = state
            oracle.update_trial(trial.trial_id, {"score": score})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
            recorder.finished(session, params, budget == problem.max_epochs, score)


def run_optuna(problem: Problem, session: Session, recorder: Recorder, seed: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace(problem.space)
    study = optuna.create_study(
        # HyperbandPruner puts a trial in a bracket by hashing the study name and trial number: a fixed name
        # (instead of Optuna's random default) makes runs reproducible.
        study_name=f"search-quality-{seed}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=problem.max_epochs, reduction_factor=3),
    )
    while recorder.result.spent < recorder.result.budget:
        trial = study.ask()
        params = _suggest(trial, space)
        pruned = False

        def on_epoch(epoch: int, value: float, trial: Any = trial) -> bool:
            nonlocal pruned
            trial.report(value, epoch)
            more = recorder.spend_epoch()
            if trial.should_prune():
                pruned = True
                return False
            return more

        values, _ = session.train(params, 0, problem.max_epochs, None, on_epoch)
        objective = session.trial_objective(values)
        complete = len(values) == problem.max_epochs and not pruned
        if complete:
            study.tell(trial, objective)
        else:  # pruned, or cut by the end of the budget
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        recorder.finished(session, params, complete, objective)


def _suggest(trial: Any, space: SearchSpace) -> dict[str, Value]:
    params: dict[str, Value] = {}
    for p in space.params:
        if not p.is_active(params):
            continue
        if p.kind in ("choice", "boolean"):
            params[p.name] = trial.suggest_categorical(p.name, list(p.grid_values()))
        elif p.kind == "fixed":
            assert p.default is not None
            params[p.name] = p.default
        elif p.kind == "int":
            assert p.low is not None and p.high is not None
            step = int(p.step or 1)
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=step, log=p.log and step == 1)
        else:
            assert p.low is not None and p.high is not None
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
    return params


def _fresh(config: Any) -> Any:
    import copy

    return copy.deepcopy(config)  # Keras Tuner's from_config rewrites the conditions in place


Runner = Callable[[Problem, Session, Recorder, int], None]


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # "hpsearch" | "keras-tuner" | "optuna"
    run: Runner


def methods(num_initial_points: int, hyperband_iterations: int) -> list[Method]:
    """Every searcher. Model-based ones start with ``num_initial_points`` quasi-random/random trials (ours:
    Sobol; Keras Tuner BayesianOptimization: random; Optuna's TPESampler keeps its default of 10)."""

    def ours(search: dict[str, Any]) -> Runner:
        return lambda problem, session, recorder, seed: run_hpsearch(search, problem, session, recorder, seed)

    def keras_tuner(kind: str) -> Runner:
        return lambda problem, session, recorder, seed: run_keras_tuner(
            kind, problem, session, recorder, seed, num_initial_points, hyperband_iterations
        )

    startup = {"n_startup_trials": num_initial_points}
    hyperband = {"factor": 3, "hyperband_iterations": hyperband_iterations}
    return [
        Method("hpsearch random", "hpsearch", ours({"algorithm": "random"})),
        Method("hpsearch tpe", "hpsearch", ours({"algorithm": "tpe", **startup})),
        Method("hpsearch bayesian", "hpsearch", ours({"algorithm": "bayesian", **startup})),
        Method("hpsearch hyperband", "hpsearch", ours({"algorithm": "hyperband", **hyperband})),
        Method("hpsearch asha", "hpsearch", ours({"algorithm": "asha", "factor": 3, "min_epochs": 1})),
        Method("hpsearch bohb", "hpsearch", ours({"algorithm": "bohb", **hyperband, **startup})),
        Method("kt random", "keras-tuner", keras_tuner("random")),
        Method("kt bayesian", "keras-tuner", keras_tuner("bayesian")),
        Method("kt hyperband", "keras-tuner", keras_tuner("hyperband")),
        Method("optuna tpe+hyperband", "optuna", run_optuna),
    ]


def run_one(method: Method, problem: Problem, seed: int, budget: int) -> RunResult:
    result = RunResult(problem=problem.name, method=method.name, seed=seed, budget=budget)
    recorder = Recorder(result, problem.max_epochs)
    started = time.perf_counter()
    with problem.session(seed) as session:
        method.run(problem, session, recorder, seed)
    result.seconds = time.perf_counter() - started
    return result
