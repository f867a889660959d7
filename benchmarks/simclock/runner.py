"""The methods compared on the simulated clock and one run of one of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simclock.clock import Driver, HeavyTail, Job, Observe, Params, simulate
from simclock.drivers import HpsearchDriver, KerasTunerDriver, OptunaDriver, Recorder
from simclock.drivers_ext import DehbDriver, SmacDriver, available
from simclock.real import LearningCurves
from sq_problems import Problem, Session, _config_seed

ANCHOR = "kt hyperband"
AUTO = "hpsearch auto"
N_INIT = 10  # start-up points of the model-based searchers (ours: Sobol; Keras Tuner BO: random; Optuna: default 10)
# hpsearch's Hyperband-schedule strategies run as many brackets as the horizon allows (a run ends at the
# anchor's wall time, not at one sweep): an iteration count no run reaches.
_SWEEPS = 1000

MakeDriver = Callable[[Problem, int, Recorder], Driver]


def _ours(search: dict[str, Any]) -> MakeDriver:
    return lambda problem, seed, rec: HpsearchDriver(search, problem.space, problem.max_epochs, seed, rec)


METHODS: dict[str, MakeDriver] = {
    ANCHOR: lambda problem, seed, rec: KerasTunerDriver("hyperband", problem.space, problem.max_epochs, seed, rec, 0),
    "hpsearch random": _ours({"algorithm": "random"}),
    "hpsearch tpe": _ours({"algorithm": "tpe", "n_startup_trials": N_INIT}),
    "hpsearch hyperband": _ours({"algorithm": "hyperband", "factor": 3, "hyperband_iterations": _SWEEPS}),
    "hpsearch asha": _ours({"algorithm": "asha", "factor": 3, "min_epochs": 1}),
    "hpsearch asha+tpe": _ours({"algorithm": "asha", "factor": 3, "sampler": "tpe", "n_startup_trials": N_INIT}),
    "hpsearch bohb": _ours(
        {"algorithm": "bohb", "factor": 3, "hyperband_iterations": _SWEEPS, "n_startup_trials": N_INIT}
    ),
    # Resolved by hpsearch's auto rule with the simulated N (see auto_search); the builder is a placeholder.
    AUTO: _ours({"algorithm": "random"}),
    "kt bayesian": lambda problem, seed, rec: KerasTunerDriver(
        "bayesian", problem.space, problem.max_epochs, seed, rec, N_INIT
    ),
    "optuna tpe+hyperband": lambda problem, seed, rec: OptunaDriver(problem.space, problem.max_epochs, seed, rec),
    "dehb": lambda problem, seed, rec: DehbDriver(problem.space, problem.max_epochs, seed, rec),
    "smac mf": lambda problem, seed, rec: SmacDriver(problem.space, problem.max_epochs, seed, rec),
}
NEEDS = {"dehb": "dehb", "smac mf": "smac"}


def auto_search(problem: Problem, workers: int, horizon: float, seed: int) -> tuple[dict[str, Any], str]:
    """The [search] table ``algorithm = "auto"`` resolves to for ``workers`` workers and a wall-time horizon,
    and its label. auto is told the budget a user with N workers for that long would state: the epochs they
    can train in it (N x horizon / the mean epoch duration) as ``max_total_epochs``."""
    from hpsearch.space import SearchSpace
    from hpsearch.strategies.auto import choose, effective_search

    budget = max(1, round(workers * horizon / HeavyTail(seed).mean()))
    search = {"algorithm": "auto", "max_epochs": problem.max_epochs, "factor": 3, "n_startup_trials": N_INIT,
              "max_total_epochs": budget}  # fmt: skip
    choice = choose(search, SearchSpace(problem.space), workers)
    resolved = effective_search(search, choice.record())
    if choice.max_trials:
        resolved["max_trials"] = choice.max_trials
    return resolved, choice.label


def installed(method: str) -> bool:
    return method not in NEEDS or available(NEEDS[method])


@dataclass
class Run:
    problem: str
    workers: int
    seed: int
    method: str
    horizon: float  # the anchor's wall time of this (problem, workers, seed) times budget; inf for the anchor
    end: float = 0.0
    idle_share: float = 0.0
    jobs: int = 0
    epochs: int = 0
    full_trials: int = 0
    cpu_seconds: float = 0.0
    curve: list[tuple[float, float]] = field(default_factory=list)
    budget: float = 1.0  # the horizon as a multiple of the anchor's wall time T (--budgets)
    note: str = ""  # what the method chose (auto: the algorithm it resolved to)
    max_epochs: int = 27  # the problem's R (runs saved before MNIST joined have no such field: all 27)

    def score_at(self, when: float) -> float | None:
        """The incumbent's score at simulated time ``when`` (None: no configuration trained to max_epochs yet)."""
        score = None
        for t, s in self.curve:
            if t > when:
                break
            score = s
        return score

    def time_to(self, target: float) -> float | None:
        return next((t for t, s in self.curve if s >= target - 1e-12), None)


def _observer(session: Session, seed: int) -> tuple[Observe, Callable[[Params], float]]:
    """What a run's jobs see at each epoch, and the score of a configuration trained to max_epochs: the
    synthetic problems' formula, or real training (MNIST: see simclock.real)."""
    if not hasattr(session, "value"):
        curves = LearningCurves(session)
        return curves.observe, curves.score
    value = session.value

    def observe(job: Job, epoch: int) -> float:
        return float(value(job.params, epoch, _config_seed(seed, job.params)))

    return observe, lambda params: session.score(params, 0.0)


def run_one(method: str, problem: Problem, workers: int, seed: int, horizon: float, budget: float = 1.0) -> Run:
    """One seeded run of ``method`` with ``workers`` simulated workers until ``horizon`` (or its end);
    ``budget``: ``horizon`` as a multiple of the anchor's wall time (recorded, and what ``auto`` is told)."""
    run = Run(problem.name, workers, seed, method, horizon, budget=budget, max_epochs=problem.max_epochs)
    with problem.session(seed) as session:
        observe, score = _observer(session, seed)
        recorder = Recorder(problem.max_epochs, score)
        started = time.process_time()
        if method == AUTO:
            search, run.note = auto_search(problem, workers, horizon, seed)
            driver: Driver = HpsearchDriver(search, problem.space, problem.max_epochs, seed, recorder)
        else:
            driver = METHODS[method](problem, seed, recorder)

        try:
            result = simulate(driver, workers, HeavyTail(seed), observe, horizon)
        finally:
            close = getattr(driver, "close", None)
            if close is not None:
                close()
        run.cpu_seconds = time.process_time() - started
    run.end = result.end
    run.idle_share = result.idle_share
    run.jobs = result.jobs
    run.epochs = result.epochs
    run.full_trials = recorder.full_trials
    run.curve = recorder.curve
    return run
