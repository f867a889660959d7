"""Samplers: random, grid, TPE and GP. Deterministic given the study seed and the trial history."""

from __future__ import annotations

import functools
import heapq
import json
import random
import warnings
from collections.abc import Sequence
from typing import Any

from hpsearch.space import Param, Value
from hpsearch.strategies.base import StudyContext, TrialView

_MAX_DUPLICATE_DRAWS = 100  # as Keras Tuner's random search retries a configuration it has seen
# The model (TPE, GP) sees at most this many finished trials: the best ``_MODEL_KEEPS_BEST`` and the most
# recent others. Fitting on the whole history would cost O(n) per suggestion for TPE and O(n^3) for GP.
MODEL_WINDOW = 200
_MODEL_KEEPS_BEST = 25  # TPE's "good" group never holds more than 25 trials (Optuna's default gamma)


_UNFINISHED = ("QUEUED", "RUNNING")  # TrialView.finished's complement, without a property call per trial


def _count_fresh(history: Sequence[TrialView], up_to: int) -> int:
    """How many trials are not promotions, counting no further than ``up_to`` (a study of 10,000 trials
    needs no pass over all of them to know it is past its start-up trials)."""
    fresh = 0
    for trial in history:
        if fresh >= up_to:
            break
        fresh += trial.parent_number is None
    return fresh


def _key(params: dict[str, Value]) -> str:
    return json.dumps(params, sort_keys=True)


class RandomSampler:
    def sample(self, context: StudyContext, history: Sequence[TrialView], count: int) -> list[dict[str, Value]]:
        seen = {_key(t.params) for t in history}
        out: list[dict[str, Value]] = []
        for offset in range(count):
            rng = random.Random(f"{context.seed}:{len(history) + offset}")
            for _ in range(_MAX_DUPLICATE_DRAWS):
                params = context.space.sample(rng)
                if _key(params) not in seen:
                    break
            else:
                return out  # the space is exhausted (or nearly so)
            seen.add(_key(params))
            out.append(params)
        return out


class SeededSampler:
    """Proposes given parameter sets first, in order, each once (a set counts as tried when a trial's params
    include it), then asks ``inner``: Optuna's ``enqueue_trial``, AutoKeras's ``initial_hps``."""

    def __init__(self, inner: Any, initial: Sequence[dict[str, Value]]) -> None:
        self.inner = inner
        self.initial = [dict(p) for p in initial]

    def sample(self, context: StudyContext, history: Sequence[TrialView], count: int) -> list[dict[str, Value]]:
        def tried(params: dict[str, Value]) -> bool:
            return any(all(t.params.get(k) == v for k, v in params.items()) for t in history)

        out = [p for p in self.initial if not tried(p)][:count]
        if len(out) < count:
            pending = [
                TrialView(-1, "QUEUED", p, None, None, epochs_done=0, budget_epochs=context.max_epochs) for p in out
            ]
            out += self.inner.sample(context, [*history, *pending], count - len(out))
        return out


class GridSampler:
    """Every combination of the grid, in Keras Tuner's order, each once."""

    def sample(self, context: StudyContext, history: Sequence[TrialView], count: int) -> list[dict[str, Value]]:
        seen = {_key(t.params) for t in history}
        out: list[dict[str, Value]] = []
        for params in context.space.grid():
            if len(out) == count:
                break
            if _key(params) not in seen:
                out.append(params)
        return out


def _unit_to_value(param: Param, unit: float) -> Value:
    """Map a point of [0, 1) to a value of ``param`` (Sobol start-up points)."""
    if param.kind in ("choice", "boolean", "fixed") or param.step is not None:
        values = param.grid_values()
        return values[min(int(unit * len(values)), len(values) - 1)]
    value = param._from_unit(unit)
    if param.kind == "int":
        assert param.high is not None
        return min(int(value), int(param.high))
    return value


class OptunaSampler:
    """TPE or Gaussian-process Bayesian optimisation through Optuna's samplers, on an in-memory Optuna study
    rebuilt from the history at every call (so a restarted coordinator samples exactly as before).

    - The first ``n_startup_trials`` points come from a scrambled Sobol sequence (quasi-random start-up).
    - Trials still queued or running are added as RUNNING: with TPE's constant liar (and GP's pending
      points) idle workers do not all receive the same configuration.
    - Multi-fidelity (BOHB, ASHA x TPE): the model sees the largest budget that has enough observations.
    - Several objectives: Optuna's multi-objective TPE (or GP) searches the Pareto front.
    - The model is fitted on a window of at most ``window`` finished trials (the best 25 and the most
      recent), so a suggestion costs the same at trial 10,000 as at trial 300.
    """

    def __init__(self, kind: str, n_startup_trials: int = 10, window: int = MODEL_WINDOW) -> None:
        self.kind = kind
        self.n_startup_trials = n_startup_trials
        self.window = window

    def sample(self, context: StudyContext, history: Sequence[TrialView], count: int) -> list[dict[str, Value]]:
        out: list[dict[str, Value]] = []
        fresh = _count_fresh(history, up_to=self.n_startup_trials)  # promotions repeat a configuration
        for offset in range(count):
            index = fresh + offset
            if index < self.n_startup_trials:
                out.append(self._sobol(context, index))
        remaining = count - len(out)
        if remaining > 0:
            out += self._model_based(context, history, out, remaining)
        return out

    def prepare(self) -> None:
        import optuna  # noqa: F401
        from scipy.stats import qmc  # noqa: F401

    def _sobol(self, context: StudyContext, index: int) -> dict[str, Value]:
        from scipy.stats import qmc

        params = context.space.params
        engine = qmc.Sobol(d=max(1, len(params)), scramble=True, seed=context.seed)
        if index:
            engine.fast_forward(index)
        point = engine.random(1)[0]
        values: dict[str, Value] = {}
        for param, unit in zip(params, point, strict=False):
            if param.is_active(values):
                values[param.name] = _unit_to_value(param, float(unit))
        return values

    def optuna_sampler(self, seed: int, grouped: bool) -> Any:
        """The Optuna sampler of one planning step (``grouped``: trials differ in which parameters they have)."""
        import optuna

        if self.kind == "bayesian":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=0, deterministic_objective=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group= (conditional spaces)
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=0, multivariate=True, group=grouped, constant_liar=True
            )

    def _observed(self, history: Sequence[TrialView], direction: str) -> list[TrialView]:
        completed = [t for t in history if t.state == "COMPLETED" and t.objective is not None]
        budgets = {t.budget_epochs for t in completed}
        if len(budgets) > 1:  # a pass per budget only where there are several (multi-fidelity)
            by_budget: dict[int, list[TrialView]] = {}
            for trial in completed:
                by_budget.setdefault(trial.budget_epochs, []).append(trial)
            enough = [b for b, trials in by_budget.items() if len(trials) >= self.n_startup_trials]
            budget = max(enough) if enough else max(by_budget, key=lambda b: len(by_budget[b]))
            completed = by_budget[budget]
        return self._windowed(completed, direction)

    def _windowed(self, observed: list[TrialView], direction: str) -> list[TrialView]:
        """The best few and the most recent of ``observed``, at most ``self.window``, in trial order."""
        if len(observed) <= self.window:
            return observed
        sign = 1.0 if direction == "min" else -1.0
        best = heapq.nsmallest(
            min(_MODEL_KEEPS_BEST, self.window), observed, key=lambda t: (sign * (t.objective or 0.0), t.number)
        )
        kept = {t.number for t in best}
        recent = [t for t in reversed(observed) if t.number not in kept][: self.window - len(kept)]
        return sorted([*best, *recent], key=lambda t: t.number)

    def _model_based(
        self, context: StudyContext, history: Sequence[TrialView], planned: list[dict[str, Value]], count: int
    ) -> list[dict[str, Value]]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = random.Random(f"{context.seed}:{len(history)}").randrange(2**31)
        directions = context.directions or (context.direction,)
        distributions = {p.name: distribution(p) for p in context.space.params if p.kind != "fixed"}

        def known(params: dict[str, Value]) -> dict[str, Value]:
            return {k: v for k, v in params.items() if k in distributions}

        observed: list[tuple[dict[str, Value], list[float]]] = []
        for seen in self._observed(history, context.direction):
            logged = seen.values if len(directions) > 1 else (seen.objective,)
            if logged is None or len(logged) != len(directions) or any(v is None for v in logged):
                continue  # a trial that never logged every objective teaches the model nothing
            observed.append((known(seen.params), [float(v) for v in logged if v is not None]))
        pending = [known(t.params) for t in history if t.state in _UNFINISHED and t.parent_number is None]
        pending += [known(p) for p in planned]
        # TPE's group decomposition matters only when trials differ in which parameters they have
        # (conditional parameters, or a space that grew); with one group it samples the same, slower.
        grouped = any(len(params) != len(distributions) for params, _ in observed) or any(
            len(params) != len(distributions) for params in pending
        )
        sampler = self.optuna_sampler(seed, grouped)
        if self.kind == "tpe" and not grouped and len(directions) == 1:
            from hpsearch.strategies.tpe import TPEBatch  # numpy, with Optuna: imported when planning

            # The usual case, a batch without the in-memory study: the same suggestions (see strategies.tpe).
            batch = TPEBatch.build(sampler, distributions, [(p, s[0]) for p, s in observed], pending, context.direction)
            if batch is not None:
                return [_active(context, params) for params in batch.suggest(count)]
        study = optuna.create_study(
            directions=["maximize" if d == "max" else "minimize" for d in directions], sampler=sampler
        )
        for params, scores in observed:
            study.add_trial(
                _owned(
                    optuna.trial.create_trial(
                        params=params, distributions={k: distributions[k] for k in params}, values=scores
                    )
                )
            )
        for params in pending:
            study.add_trial(
                _owned(
                    optuna.trial.create_trial(
                        state=optuna.trial.TrialState.RUNNING,
                        params=params,
                        distributions={k: distributions[k] for k in params},
                    )
                )
            )
        out: list[dict[str, Value]] = []
        for _ in range(count):
            asked = study.ask()
            out.append(_active(context, lambda name, trial=asked: trial._suggest(name, distributions[name])))
        return out


def _active(context: StudyContext, suggest: Any) -> dict[str, Value]:
    """A suggestion as a trial's parameters: the active ones, in the space's order, fixed ones at their
    value. ``suggest`` maps a parameter's name to its value (a dict, or Optuna's ``Trial._suggest``)."""
    pick = suggest.__getitem__ if isinstance(suggest, dict) else suggest
    values: dict[str, Value] = {}
    for param in context.space.params:
        if not param.is_active(values):
            continue
        if param.kind == "fixed":
            values[param.name] = param.default  # type: ignore[assignment]
        else:
            values[param.name] = pick(param.name)
    return values


@functools.cache
def _owned_trial_class() -> type:
    from optuna.trial import FrozenTrial

    class OwnedTrial(FrozenTrial):
        def __deepcopy__(self, memo: dict[int, Any]) -> FrozenTrial:
            return self

    return OwnedTrial


def _owned(trial: Any) -> Any:
    """The FrozenTrial as one Optuna's in-memory storage keeps without a deep copy. The storage copies every
    trial it is given (12% of the planning time at a window of 200); these are built for one call and never
    reused, so the copy protects nothing."""
    trial.__class__ = _owned_trial_class()
    return trial


def distribution(param: Param) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.kind in ("choice", "boolean") or (param.log and param.step is not None):
        return CategoricalDistribution(list(param.grid_values()))
    assert param.low is not None and param.high is not None
    if param.kind == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)
