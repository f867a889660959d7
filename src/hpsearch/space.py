"""Search spaces: Keras Tuner ``HyperParameters`` config JSON, read without importing keras (discovering a
space by building the hypermodel is execution's: :mod:`hpsearch.execution.discovery`).

The stored form of a space is exactly ``keras_tuner.HyperParameters.get_config()`` so workers rebuild it
with ``HyperParameters.from_config``; the coordinator reads the same JSON into :class:`Param` objects to
sample and enumerate values. Discovery (building the hypermodel with every conditional branch active)
needs keras and lives in :func:`discover_space`.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hpsearch.errors import SpecError

if TYPE_CHECKING:  # spec imports the algorithm registry, which imports this module: types only
    from hpsearch.spec import ParamSpec

Value = int | float | str | bool
Kind = Literal["int", "float", "choice", "boolean", "fixed"]
_KT_CLASS = {"Int": "int", "Float": "float", "Choice": "choice", "Boolean": "boolean", "Fixed": "fixed"}
_GRID_POINTS_WITHOUT_STEP = 10  # as Keras Tuner's GridSearch does for a continuous range
# A grid search plans every combination: beyond this many (the most trials a study may plan) it is refused
# unless max_trials caps it.
GRID_MAX = 1_000_000


@dataclass(frozen=True)
class Condition:
    """A Keras Tuner ``Parent`` condition: active when ``name`` takes one of ``values``."""

    name: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    conditions: tuple[Condition, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Value, ...] = ()
    default: Value | None = None

    def is_active(self, values: Mapping[str, Value]) -> bool:
        return all(values.get(c.name) in c.values for c in self.conditions)

    def allows(self, value: Value) -> bool:
        """Whether ``value`` lies in this parameter's domain."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "fixed":
            return value == self.default
        assert self.low is not None and self.high is not None
        return isinstance(value, int | float) and not isinstance(value, bool) and self.low <= value <= self.high

    def sample(self, rng: random.Random) -> Value:
        if self.kind in ("choice", "boolean", "fixed"):
            return rng.choice(self.grid_values())
        assert self.low is not None and self.high is not None
        if self.step is not None:
            return rng.choice(self.grid_values())
        if self.kind == "int":
            if self.log:
                return min(int(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))), int(self.high))
            return rng.randint(int(self.low), int(self.high))
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def grid_count(self) -> float:
        """How many values :meth:`grid_values` has, computed without listing them (``inf``: a log step <= 1
        never reaches the maximum).

        >>> Param("n", "int", low=0, high=10**12).grid_count()
        1000000000001
        """
        if self.kind in ("choice", "boolean", "fixed") or self.step is None:
            if self.kind == "int" and self.step is None and not self.log:
                assert self.low is not None and self.high is not None
                return int(self.high) - int(self.low) + 1
            return len(self.grid_values())
        assert self.low is not None and self.high is not None
        if self.log:
            if self.step <= 1:
                return math.inf
            return math.floor(math.log(self.high * (1 + 1e-12) / self.low) / math.log(self.step)) + 1
        return math.floor((self.high * (1 + 1e-12) - self.low) / self.step + 1e-9) + 1

    def grid_values(self) -> Sequence[Value]:
        """Every value a grid search tries, in Keras Tuner's order (an integer range lazily: it may be wide)."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "boolean":
            return (False, True)
        if self.kind == "fixed":
            return (self.default,) if self.default is not None else ()
        assert self.low is not None and self.high is not None
        if self.step is None:
            if self.kind == "int" and not self.log:
                return range(int(self.low), int(self.high) + 1)
            probs = [(i + 0.5) / _GRID_POINTS_WITHOUT_STEP for i in range(_GRID_POINTS_WITHOUT_STEP)]
            spread = [self._from_unit(p) for p in probs]
            return tuple(dict.fromkeys(int(v) if self.kind == "int" else v for v in spread))
        points: list[float] = []
        value = self.low
        while value <= self.high * (1 + 1e-12):
            points.append(value)
            value = value * self.step if self.log else value + self.step
        if self.kind == "int":
            return tuple(dict.fromkeys(round(v) for v in points))
        return tuple(points)

    def _from_unit(self, prob: float) -> float:
        assert self.low is not None and self.high is not None
        if self.log:
            return self.low * (self.high / self.low) ** prob
        return self.low + (self.high - self.low) * prob


def _param_from_kt(entry: Mapping[str, Any]) -> Param:
    kind = _KT_CLASS.get(entry["class_name"])
    if kind is None:
        raise ValueError(f"unsupported hyperparameter class {entry['class_name']!r}")
    cfg = entry["config"]
    conditions = tuple(Condition(c["config"]["name"], tuple(c["config"]["values"])) for c in cfg.get("conditions", []))
    common: dict[str, Any] = {"name": cfg["name"], "kind": kind, "conditions": conditions}
    if kind in ("int", "float"):
        return Param(
            **common,
            low=cfg["min_value"],
            high=cfg["max_value"],
            step=cfg.get("step"),
            log=cfg.get("sampling") in ("log", "reverse_log"),
            default=cfg.get("default"),
        )
    if kind == "choice":
        return Param(**common, choices=tuple(cfg["values"]), default=cfg.get("default"))
    if kind == "boolean":
        return Param(**common, default=cfg.get("default", False))
    return Param(**common, default=cfg["value"])


class SearchSpace:
    """A search space in declaration order; a parameter's conditions refer to earlier parameters."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config: dict[str, Any] = {"space": list(config.get("space", [])), "values": {}}
        self.params: tuple[Param, ...] = tuple(_param_from_kt(e) for e in self.config["space"])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def sample(self, rng: random.Random) -> dict[str, Value]:
        values: dict[str, Value] = {}
        for param in self.params:
            if param.is_active(values):
                values[param.name] = param.sample(rng)
        return values

    def grid(self) -> Iterator[dict[str, Value]]:
        """Every combination of active values: a conditional parameter only varies inside its branch."""

        def expand(index: int, values: dict[str, Value]) -> Iterator[dict[str, Value]]:
            if index == len(self.params):
                yield dict(values)
                return
            param = self.params[index]
            if not param.is_active(values):
                yield from expand(index + 1, values)
                return
            for value in param.grid_values():
                values[param.name] = value
                yield from expand(index + 1, values)
            values.pop(param.name, None)

        return expand(0, {})

    def grid_size(self, limit: int | None = None) -> int:
        """How many combinations :meth:`grid` yields, at most ``limit``: counted, not enumerated, unless
        conditional parameters make only enumeration exact (then at most ``limit`` are). Without a limit, a
        grid beyond :data:`GRID_MAX` raises ValueError; so does one that never ends (a log step <= 1).

        >>> space = SearchSpace({"space": [{"class_name": "Int", "config": {"name": "n", "min_value": 0,
        ...     "max_value": 10**12, "step": None, "sampling": "linear"}}]})
        >>> space.grid_size(limit=5)
        5
        """
        bound = math.prod(max(1, p.grid_count()) for p in self.params)
        if math.isinf(bound):
            endless = next(p.name for p in self.params if math.isinf(p.grid_count()))
            raise ValueError(f"the grid of {endless!r} never ends: a log step must be greater than 1")
        if limit is None and bound > GRID_MAX:
            raise ValueError(
                f"a grid of {bound:.3g} combinations is more than {GRID_MAX:,}: set max_trials or narrow the space"
            )
        if not any(p.conditions for p in self.params):
            return int(min(bound, limit)) if limit is not None else int(bound)
        return sum(1 for _ in itertools.islice(self.grid(), limit))

    def merged_with(self, config: Mapping[str, Any]) -> SearchSpace:
        """This space plus parameters first declared elsewhere (in a HyperModel's ``fit``)."""
        known = set(self.names)
        extra = [e for e in config.get("space", []) if e["config"]["name"] not in known]
        return SearchSpace({"space": self.config["space"] + extra}) if extra else self


def override_config(space: Mapping[str, Any], overrides: Mapping[str, ParamSpec], source: str) -> dict[str, Any]:
    """Replace the hypermodel's declaration of each ``[space]`` entry of the study file."""
    entries = {e["config"]["name"]: e for e in space["space"]}
    for name, spec in overrides.items():
        entry = entries.get(name)
        if entry is None:
            raise SpecError(f"{source}: space.{name}", "the hypermodel declares no parameter of this name")
        declared = _KT_CLASS[entry["class_name"]]
        if declared != spec.type:
            raise SpecError(
                f"{source}: space.{name}", f"declared as {spec.type} here but as {declared} by the hypermodel"
            )
        entries[name] = {"class_name": entry["class_name"], "config": _kt_config(spec, entry["config"])}
    return {"space": list(entries.values()), "values": {}}


def _kt_config(spec: ParamSpec, declared: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"name": declared["name"], "conditions": declared.get("conditions", [])}
    if spec.type == "fixed":
        return {**config, "value": spec.value}
    config["default"] = spec.default
    if spec.type in ("int", "float"):
        return {**config, "min_value": spec.min, "max_value": spec.max, "step": spec.step, "sampling": spec.sampling}
    if spec.type == "choice":
        return {**config, "values": list(spec.values), "ordered": spec.ordered}
    return {**config, "default": bool(spec.default)}
