"""Samplers: random and grid. Deterministic given the study seed and the trial history."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from hpsearch.space import Value
from hpsearch.strategies.base import StudyContext, TrialView

_MAX_DUPLICATE_DRAWS = 100  # as Keras Tuner's random search retries a configuration it has seen


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
