"""A batch of TPE suggestions on arrays: what Optuna's ``TPESampler(multivariate=True, constant_liar=True)``
suggests on an in-memory study of the same trials, ask after ask, without the study.

Why: the coordinator plans a tick's batch (often 16 or more trials) by asking Optuna's sampler once per
trial, and that was most of its CPU. Each ask re-reads every trial of the in-memory study, splits them into
good and bad, converts their parameters to arrays, fits both Parzen estimators again, draws 24 candidates
from the "good" one and scores them under both, although within a batch only the pending trials change
(the constant liar: each trial asked joins the "bad" group for the asks after it). Here the finished
trials become arrays once, the "good" estimator is fitted once, and it draws and scores the candidates of
every ask of the batch in one call (the candidates never depend on earlier asks: only the "bad" estimator
does); each ask then fits only the "bad" estimator and scores its own 24 candidates under it.

It calls Optuna's own Parzen estimator with the sampler's settings and random state, and draws the same
random numbers in the same order (see ``_Replay``), so a batch is the same, value for value, as the
study-based path (tests/strategies/test_tpe_batch.py checks it). The cases it does not cover (conditional
spaces, several objectives, no finished trial yet, a value outside its distribution, an Optuna without these
internals) return None, and the caller asks the study as before.

>>> from optuna.distributions import FloatDistribution
>>> batch = TPEBatch.build(_tpe(seed=0), {"x": FloatDistribution(0.0, 1.0)},
...                        [({"x": 0.1}, 1.0), ({"x": 0.9}, 2.0)], pending=[], direction="min")
>>> [0.0 <= s["x"] <= 1.0 for s in batch.suggest(3)]
[True, True, True]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Params = dict[str, Any]


def _tpe(seed: int) -> Any:
    """The sampler whose settings and random state a batch uses (doctest helper; planning passes its own)."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, multivariate=True, constant_liar=True)


class TPEBatch:
    """Suggestions for one planning step. ``build`` returns None where the shortcut does not apply."""

    def __init__(
        self,
        sampler: Any,
        space: dict[str, Any],
        fixed: dict[str, Any],
        below: dict[str, np.ndarray],
        above: np.ndarray,
    ) -> None:
        self._estimator = sampler._parzen_estimator_cls
        self._sampler = sampler
        self._space = space  # the modelled parameters, sorted by name as Optuna orders its search space
        self._fixed = fixed  # parameters with a single possible value
        self._below = self._estimator(below, space, sampler._parzen_estimator_parameters)
        self._above = above  # rows: the "bad" finished trials, then the pending ones in the order asked

    @classmethod
    def build(
        cls,
        sampler: Any,
        distributions: dict[str, Any],
        observed: Sequence[tuple[Params, float]],
        pending: Sequence[Params],
        direction: str,
    ) -> TPEBatch | None:
        """The batch for ``observed`` (params and objective, in trial order) and ``pending`` (queued or
        running trials, in trial order), or None when the study-based path must plan."""
        if len(observed) < max(1, getattr(sampler, "_n_startup_trials", 1)) or not _private_api(sampler):
            return None
        space = {k: d for k, d in sorted(distributions.items()) if not d.single()}
        fixed = {k: d for k, d in distributions.items() if d.single()}
        if not space:
            return None
        rows = _internal(space, [params for params, _ in observed])
        liars = _internal(space, pending)
        if rows is None or liars is None:
            return None
        values = np.asarray([value for _, value in observed], dtype=float)
        if not np.all(np.isfinite(values)):
            return None
        # Optuna's split: the gamma(n) best finished trials (a stable sort, so ties go to the earlier trial)
        # are "below"; the rest, then the running trials, "above"; each group in trial order.
        order = np.argsort(values if direction == "min" else -values, kind="stable")
        from optuna.samplers._tpe.sampler import default_gamma

        n_below = min((sampler._gamma or default_gamma)(len(values)), len(values))
        good = np.zeros(len(values), dtype=bool)
        good[order[:n_below]] = True
        below = {name: rows[good, i] for i, name in enumerate(space)}
        above = np.concatenate([rows[~good], liars])
        return cls(sampler, space, fixed, below, above)

    def suggest(self, count: int) -> list[Params]:
        """The next ``count`` suggestions, each counted as a pending trial by the asks after it."""
        sampler = self._sampler
        size = sampler._n_ei_candidates
        kinds = [type(d).__name__ == "_BatchedCategoricalDistributions" for d in self._below_mixture.distributions]
        replay = _Replay(sampler._rng.rng, count, size, categorical=sum(kinds), numerical=len(kinds) - sum(kinds))
        candidates = self._below.sample(replay, count * size)  # a RandomState in all that it is asked
        good = self._below.log_pdf(candidates)
        out = []
        for ask in range(count):
            mine = slice(ask * size, (ask + 1) * size)
            above = self._estimator(
                {name: self._above[:, i] for i, name in enumerate(self._space)},
                self._space,
                sampler._parzen_estimator_parameters,
            )
            score = good[mine] - above.log_pdf({name: values[mine] for name, values in candidates.items()})
            best = ask * size + int(np.argmax(score))
            params: Params = {}
            row = []
            for name, dist in self._space.items():
                params[name] = dist.to_external_repr(candidates[name][best].item())
                row.append(dist.to_internal_repr(params[name]))
            self._above = np.vstack([self._above, np.asarray([row], dtype=float)])
            for name, dist in self._fixed.items():
                params[name] = _single_value(dist)  # as Trial._suggest gives a one-valued distribution
            out.append(params)
        return out

    @property
    def _below_mixture(self) -> Any:
        return self._below._mixture_distribution


class _Replay:
    """Stands in for the sampler's RandomState in one ``sample(rng, count * size)`` of the "good" estimator
    and hands out what ``count`` calls of ``sample(rng, size)`` would have drawn. One such call draws, in
    this order: ``size`` uniforms through ``choice`` (the mixture's components), ``size`` through ``rand``
    for each categorical parameter, and ``(numerical, size)`` through ``uniform`` (the truncated normals'
    quantiles); all are the generator's doubles in sequence, so drawing them at once and laying them out
    as the one larger call asks for them gives every candidate the same numbers."""

    def __init__(self, rng: np.random.RandomState, count: int, size: int, categorical: int, numerical: int) -> None:
        draws = rng.random_sample((count, 1 + categorical + numerical, size))
        self._choice = draws[:, 0, :].reshape(-1)
        self._categorical = [draws[:, 1 + i, :].reshape(-1) for i in range(categorical)]
        self._numerical = draws[:, 1 + categorical :, :].transpose(1, 0, 2).reshape(numerical, count * size)

    def choice(self, n: int, p: np.ndarray, size: int) -> np.ndarray:
        cdf = p.cumsum()  # as RandomState.choice with p (its stream is frozen by NumPy's policy)
        cdf /= cdf[-1]
        return cdf.searchsorted(self._choice, side="right")

    def rand(self, size: int) -> np.ndarray:
        return self._categorical.pop(0)

    def uniform(self, low: float, high: float, size: tuple[int, int]) -> np.ndarray:
        assert (low, high) == (0, 1) and size == self._numerical.shape
        return self._numerical


def _private_api(sampler: Any) -> bool:
    """Whether this Optuna's TPESampler has the internals the batch reads (checked, not assumed)."""
    names = ("_parzen_estimator_parameters", "_parzen_estimator_cls", "_rng", "_n_ei_candidates", "_gamma")
    if not all(hasattr(sampler, n) for n in names):
        return False
    settings = ("_multivariate", "_group", "_constant_liar", "_constraints_func")
    multivariate, group, liar, constraints = (getattr(sampler, n, None) for n in settings)
    return multivariate is True and group is False and liar is True and constraints is None


def _internal(space: dict[str, Any], trials: Sequence[Params]) -> np.ndarray | None:
    """Each trial's modelled parameters in Optuna's internal representation, one row a trial; None when a
    trial lacks one or holds a value outside its distribution (the study-based path then decides)."""
    out = np.empty((len(trials), len(space)), dtype=float)
    for r, params in enumerate(trials):
        for c, (name, dist) in enumerate(space.items()):
            if name not in params:
                return None
            try:
                value = dist.to_internal_repr(params[name])
            except (ValueError, TypeError):
                return None
            if not dist._contains(value) or (isinstance(value, float) and math.isnan(value)):
                return None
            out[r, c] = value
    return out


def _single_value(dist: Any) -> Any:
    from optuna.distributions import _get_single_value

    return _get_single_value(dist)
