"""Drivers of the simulated clock for hpsearch, Keras Tuner and Optuna (DEHB and SMAC3: ``drivers_ext.py``).

Every driver records the same anytime curve: after each job that trained a configuration to max_epochs,
the incumbent is the configuration with the best *observed* objective among those jobs, and the curve
point is (simulated time, the incumbent's exact score), as ``search_quality.py`` does on epochs.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simclock.clock import Job, Params
from sq_methods import _active, _fresh, _suggest

from hpsearch.space import SearchSpace
from hpsearch.strategies import StudyContext, TrialView, make_strategy

Score = Callable[[Params], float]


@dataclass
class Recorder:
    """The anytime curve of one run: (time, score of the incumbent) at every change of incumbent."""

    max_epochs: int
    score: Score
    best_objective: float = -math.inf
    curve: list[tuple[float, float]] = field(default_factory=list)
    full_trials: int = 0

    def finished(self, params: Params, epochs_reached: int, objective: float, now: float) -> None:
        if epochs_reached < self.max_epochs:
            return
        self.full_trials += 1
        if objective > self.best_objective:
            self.best_objective = objective
            self.curve.append((now, self.score(params)))


class HpsearchDriver:
    """hpsearch's coordinator planning: ``make_strategy(search).plan(context, history, free)`` whenever
    workers are free, over a history in which every job still training is a RUNNING trial (so TPE's
    constant liar, the pending points and the schedulers' waits all see it, as in the database)."""

    def __init__(self, search: Mapping[str, Any], space: dict[str, Any], max_epochs: int, seed: int, rec: Recorder):
        self.strategy = make_strategy({**search, "max_epochs": max_epochs})
        self.strategy.prepare()
        self.context = StudyContext(
            space=SearchSpace(space),
            direction="max",
            seed=seed,
            max_trials=search.get("max_trials"),
            max_epochs=max_epochs,
        )
        self.history: list[TrialView] = []
        self.recorder = rec

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        jobs = []
        for new in self.strategy.plan(self.context, self.history, len(free)):
            number = len(self.history)
            self.history.append(
                TrialView(
                    number=number,
                    state="RUNNING",
                    params=dict(new.params),
                    objective=None,
                    best_epoch=None,
                    epochs_done=new.initial_epoch,
                    budget_epochs=new.budget_epochs,
                    initial_epoch=new.initial_epoch,
                    parent_number=new.parent_number,
                    bracket=new.bracket,
                    rung=new.rung,
                )
            )
            jobs.append(Job(dict(new.params), new.initial_epoch, new.budget_epochs, number))
        return jobs

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        return True

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        old = self.history[job.token]
        objective = values[-1]  # synthetic problems: the observation at the trial's own fidelity
        self.history[job.token] = TrialView(
            number=old.number,
            state="COMPLETED",
            params=old.params,
            objective=objective,
            best_epoch=job.budget_epochs,
            epochs_done=job.budget_epochs,
            budget_epochs=old.budget_epochs,
            initial_epoch=old.initial_epoch,
            parent_number=old.parent_number,
            bracket=old.bracket,
            rung=old.rung,
            curve={job.initial_epoch + 1 + i: v for i, v in enumerate(values)},
        )
        self.recorder.finished(job.params, job.budget_epochs, objective, now)


KERAS_TUNER_SEED_SPACING = 100_003  # as search_quality.py: Keras Tuner's seeds 1, 2, 3 are nearly one run


class KerasTunerDriver:
    """A Keras Tuner oracle serving N tuners, as its distributed mode does (tuner ``w`` asks for worker
    ``w``): ``create_trial`` per free worker; a trial of status IDLE (the oracle waits for results, as
    Hyperband does between rounds) leaves that worker idle until the next result; STOPPED ends the search.
    The oracle is Keras Tuner's own, unchanged: its Hyperband promotes the best finished trial of a round as
    soon as more of the round have finished than the next round drops, and opens a new bracket when no
    running bracket can go on."""

    def __init__(self, kind: str, space: dict[str, Any], max_epochs: int, seed: int, rec: Recorder, n_init: int):
        import keras_tuner as kt

        self.space = SearchSpace(space)
        self.max_epochs = max_epochs
        self.recorder = rec
        hp = kt.HyperParameters.from_config({"space": _fresh(space["space"]), "values": {}})
        objective = kt.Objective("score", "max")
        seed *= KERAS_TUNER_SEED_SPACING
        self.oracle: Any
        if kind == "hyperband":
            self.oracle = kt.oracles.HyperbandOracle(
                objective=objective, max_epochs=max_epochs, factor=3, hyperband_iterations=1, seed=seed,
                hyperparameters=hp,
            )  # fmt: skip
        else:
            self.oracle = kt.oracles.BayesianOptimizationOracle(
                objective=objective, max_trials=100_000, num_initial_points=n_init, seed=seed, hyperparameters=hp
            )
        self._dir = tempfile.TemporaryDirectory(prefix="hpsearch-simclock-kt-")
        self.oracle._set_project_dir(self._dir.name, "kt")
        self.oracle.verbose = 0
        self.stopped = False

    def close(self) -> None:
        self._dir.cleanup()

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        jobs: list[Job] = []
        for worker in free:
            trial = self.oracle.create_trial(f"tuner{worker}")
            if trial.status == "STOPPED":
                return jobs or None
            if trial.status != "RUNNING":  # IDLE: the oracle waits for a result
                break
            values = trial.hyperparameters.values
            budget = int(values.get("tuner/epochs", self.max_epochs))
            initial = int(values.get("tuner/initial_epoch", 0))
            jobs.append(Job(_active(self.space, values), initial, budget, trial))
        return jobs

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        return True

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        trial = job.token
        self.oracle.update_trial(trial.trial_id, {"score": values[-1]})
        trial.status = "COMPLETED"
        self.oracle.end_trial(trial)
        self.recorder.finished(job.params, job.budget_epochs, values[-1], now)


class OptunaDriver:
    """Optuna's TPESampler(constant_liar=True) + HyperbandPruner(1, R, 3), one ``ask`` per free worker,
    ``report`` + ``should_prune`` after every epoch, ``tell`` at the end: Optuna's N-worker set-up on one
    in-memory study (the RDB storage would add latency, not change decisions)."""

    def __init__(self, space: dict[str, Any], max_epochs: int, seed: int, rec: Recorder):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.space = SearchSpace(space)
        self.max_epochs = max_epochs
        self.recorder = rec
        self.study = optuna.create_study(
            study_name=f"simclock-{seed}",  # the pruner's bracket hash uses it: fixed, so runs repeat
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3),
        )

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        jobs = []
        for _ in free:
            trial = self.study.ask()
            jobs.append(Job(_suggest(trial, self.space), 0, self.max_epochs, trial))
        return jobs

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        job.token.report(value, epoch)
        return not job.token.should_prune()

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        if stopped:
            self.study.tell(job.token, state=self.optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(job.token, values[-1])
        reached = job.initial_epoch + len(values)
        self.recorder.finished(job.params, reached, values[-1], now)
