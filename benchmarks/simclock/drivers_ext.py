"""Drivers of the simulated clock for DEHB and SMAC3's multi-fidelity facade, through their ask/tell
interfaces. Both evaluate a configuration at a fidelity from scratch (their design: no continuation from
a lower fidelity), so a job at budget b trains epochs 1..b and costs b epochs.

Both are optional (``pip install dehb smac``); ``available()`` says which are installed.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from typing import Any

from simclock.clock import Job
from simclock.drivers import Recorder

from hpsearch.space import SearchSpace, Value


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def config_space(space: SearchSpace, seed: int) -> Any:
    """The ConfigSpace of an hpsearch space (floats, ints, booleans and choices: what the problems use).

    A range with a step (MNIST's ``units``: 32..512 step 32) becomes an integer index into its grid, so the
    searchers propose only values of the space. Conditional parameters are left unconditional here (DEHB's
    vector encoding has no inactive values); ``from_config`` drops them when their condition is false."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    for p in space.params:
        if p.kind in ("boolean", "choice"):
            cs.add(Categorical(p.name, [str(v) for v in p.grid_values()]))
        elif p.kind in ("int", "float") and p.step is not None:
            cs.add(Integer(p.name, (0, len(p.grid_values()) - 1)))
        elif p.kind == "int":
            assert p.low is not None and p.high is not None
            cs.add(Integer(p.name, (int(p.low), int(p.high)), log=p.log))
        elif p.kind == "float":
            assert p.low is not None and p.high is not None
            cs.add(Float(p.name, (p.low, p.high), log=p.log))
    return cs


def from_config(space: SearchSpace, config: Any) -> dict[str, Value]:
    """The hpsearch values of a configuration of :func:`config_space` (only the active parameters)."""
    values = dict(config)
    params: dict[str, Value] = {}
    for p in space.params:
        if not p.is_active(params):
            continue
        if p.kind in ("boolean", "choice"):
            params[p.name] = next(v for v in p.grid_values() if str(v) == values[p.name])
        elif p.kind in ("int", "float") and p.step is not None:
            params[p.name] = p.grid_values()[int(values[p.name])]
        elif p.kind == "int":
            params[p.name] = int(values[p.name])
        elif p.kind == "float":
            params[p.name] = float(values[p.name])
        elif p.kind == "fixed" and p.default is not None:
            params[p.name] = p.default
    return params


class DehbDriver:
    """DEHB (Awad et al. 2021): ``ask`` per free worker (DEHB starts further brackets while earlier ones wait,
    its asynchronous mode), ``tell`` with fitness = -objective (DEHB minimises) and cost = the fidelity."""

    def __init__(self, space: dict[str, Any], max_epochs: int, seed: int, rec: Recorder):
        from dehb import DEHB
        from loguru import logger

        logger.remove()  # DEHB logs every bracket through loguru
        self.space = SearchSpace(space)
        self.recorder = rec
        self._dir = tempfile.TemporaryDirectory(prefix="hpsearch-simclock-dehb-")
        cs = config_space(self.space, seed)
        self.dehb = DEHB(
            cs=cs,
            dimensions=len(list(cs.values())),
            min_fidelity=1,
            max_fidelity=max_epochs,
            eta=3,
            n_workers=1,  # >1 starts a Dask cluster; ask/tell itself allows any number of pending jobs
            seed=seed,
            output_path=self._dir.name,
            save_freq=None,
        )

    def close(self) -> None:
        self._dir.cleanup()

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        jobs = []
        for _ in free:
            asked = self.dehb.ask()
            config = asked["config"]
            if not hasattr(config, "keys"):  # a vector in [0, 1]^d (older DEHB): map it to the space
                config = self.dehb.vector_to_configspace(config)
            jobs.append(Job(from_config(self.space, config), 0, round(float(asked["fidelity"])), asked))
        return jobs

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        return True

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        self.dehb.tell(job.token, {"fitness": -values[-1], "cost": float(job.budget_epochs)})
        self.recorder.finished(job.params, job.budget_epochs, values[-1], now)


class SmacDriver:
    """SMAC3's ``MultiFidelityFacade`` (random forest + Hyperband intensifier, eta = 3, budgets 1..R) with its
    defaults, ``ask`` per free worker and ``tell`` with cost = -objective (SMAC minimises)."""

    def __init__(self, space: dict[str, Any], max_epochs: int, seed: int, rec: Recorder):
        from smac import MultiFidelityFacade, Scenario

        for name in ("smac", "ConfigSpace"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.space = SearchSpace(space)
        self.recorder = rec
        self._dir = tempfile.TemporaryDirectory(prefix="hpsearch-simclock-smac-")
        scenario = Scenario(
            config_space(self.space, seed),
            deterministic=True,
            n_trials=1_000_000,  # the clock's horizon ends the run
            min_budget=1,
            max_budget=max_epochs,
            seed=seed,
            output_directory=self._dir.name,
        )
        self.smac = MultiFidelityFacade(
            scenario,
            lambda config, seed=0, budget=1: 0.0,  # never called: ask/tell only
            intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=3),
            overwrite=True,
            logging_level=logging.ERROR,
        )

    def close(self) -> None:
        self._dir.cleanup()

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        jobs = []
        for _ in free:
            info = self.smac.ask()
            jobs.append(Job(from_config(self.space, info.config), 0, round(float(info.budget)), info))
        return jobs

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        return True

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        from smac.runhistory.dataclasses import TrialValue

        self.smac.tell(job.token, TrialValue(cost=-values[-1]))
        self.recorder.finished(job.params, job.budget_epochs, values[-1], now)
