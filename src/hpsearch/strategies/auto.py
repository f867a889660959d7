"""``algorithm = "auto"``: pick bohb or asha with the TPE sampler from the budget, the space and the worker count,
once, when the study is created; the pick and its reason are stored with the study (``studies.algorithm_choice``)
and every coordinator builds the stored pick from then on (:func:`effective_search`), so a restart, a new
hpsearch version with another rule, or a space grown in ``fit`` never switches a running study's algorithm.

Why a depth rule. In the simulated-clock benchmark (BENCHMARKS.md, "Search quality with N workers", issue 25)
bohb leads when every worker can train several full-length trials in the budget, and ASHA with TPE (an
asynchronous BOHB) leads when it cannot: with one Hyperband sweep for 16 workers, BOHB's rounds still wait for
most of their trials while ASHA promotes whenever a rung's top third grows. The quantity that decides is the
*depth*: the budget in epochs over (workers x max_epochs), i.e. how many full-length trainings each worker
has time for; the worker count enters through it. The threshold :data:`DEPTH_BOHB` is where the measured
medians cross (BENCHMARKS.md, "algorithm = auto").

>>> from hpsearch.space import SearchSpace
>>> space = SearchSpace({"space": [{"class_name": "Float", "config": {"name": f"x{i}", "min_value": 0.0,
...     "max_value": 1.0, "step": None, "sampling": "linear", "default": 0.0, "conditions": []}} for i in range(6)]})
>>> choose({"max_epochs": 27}, space, workers=1).algorithm
'bohb'
>>> choose({"max_epochs": 27}, space, workers=16).label
'asha+tpe'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpsearch.space import SearchSpace
from hpsearch.strategies.options import SearchOptions

AUTO = "auto"
# bohb when each worker can train at least this many full-length (max_epochs) trials in the budget, else
# asha+tpe. BENCHMARKS.md's simulated-clock tables (issue 25): asha+tpe led at depths 0.7 to 1.4 (8 and 16
# workers), bohb from 1.6 on (1 to 12 workers; at 16 workers and depth 2.8 asha+tpe led by a hair, within the
# seed spread). Between 1.4 and 1.6 auto's estimate of the depth varies from seed to seed: 1.3 keeps the
# 12-worker runs (bohb ahead by 0.3 on Hartmann-6) on bohb; 1.5 split them and lost more than the seed spread.
DEPTH_BOHB = 1.3
# Where the rule comes from, quoted in every reason.
SOURCE = "BENCHMARKS.md, simulated clock (issue 25)"
# What the pick sets in [search] on top of the study file's table (budgets are never overridden: `study extend`
# and the coordinator's budget checks read the file's values).
_PICKED_OPTIONS = ("sampler", "hyperband_iterations")


@dataclass(frozen=True)
class Choice:
    """What ``auto`` resolved to: ``algorithm`` with ``options`` set in [search]; ``max_trials``: the trial
    count to record for the study (asha: configurations); ``reason``: one line for the study's record.

    >>> Choice("asha", {"sampler": "tpe"}, 103, "...").label
    'asha+tpe'
    """

    algorithm: str
    options: dict[str, Any] = field(default_factory=dict)
    max_trials: int | None = None
    reason: str = ""

    @property
    def label(self) -> str:
        """``bohb`` or ``asha+tpe``: the names BENCHMARKS.md's tables use."""
        sampler = self.options.get("sampler")
        return f"{self.algorithm}+{sampler}" if sampler and sampler != "random" else self.algorithm

    def record(self) -> dict[str, Any]:
        """The JSON stored in ``studies.algorithm_choice``."""
        return {"algorithm": self.algorithm, "options": dict(self.options), "reason": self.reason}


def sweep(max_epochs: int, factor: int) -> tuple[int, int]:
    """(trials, epochs) of one Hyperband sweep (Keras Tuner's brackets; a promotion trains only its extra
    epochs).

    >>> sweep(27, 3)
    (70, 375)
    """
    from hpsearch.strategies.schedulers import Hyperband

    band = Hyperband(factor, 1)
    trials = epochs = 0
    for b in range(band.num_brackets(max_epochs)):
        for r in range(b + 1):
            size = band.size(max_epochs, b, r)
            before = band.epochs(max_epochs, b, r - 1) if r else 0
            trials += size
            epochs += size * (band.epochs(max_epochs, b, r) - before)
    return trials, epochs


def asha_epochs_per_configuration(max_epochs: int, factor: int, min_epochs: int = 1) -> float:
    """The expected epochs one ASHA configuration costs, its promotions included (a share 1/factor^k of the
    configurations reaches rung k).

    >>> asha_epochs_per_configuration(27, 3)  # 1 + 2/3 + 6/9 + 18/27
    3.0
    """
    from hpsearch.strategies.schedulers import ASHA

    rungs = ASHA(factor, min_epochs).rung_epochs(max_epochs)
    return rungs[0] + sum((rungs[k] - rungs[k - 1]) / factor**k for k in range(1, len(rungs)))


def describe_space(space: SearchSpace) -> str:
    """The space in words: counts by kind, and how many are conditional.

    >>> describe_space(SearchSpace({"space": []}))
    'no hyperparameters'
    """
    counts: dict[str, int] = {}
    for param in space.params:
        if param.kind != "fixed":
            counts[param.kind] = counts.get(param.kind, 0) + 1
    if not counts:
        return "no hyperparameters"
    plural = {"int": "ints", "float": "floats", "choice": "choices", "boolean": "booleans"}
    words = [f"{n} {plural[k] if n > 1 else k}" for k, n in counts.items()]
    conditional = sum(bool(p.conditions) for p in space.params if p.kind != "fixed")
    return " + ".join(words) + (f", {conditional} conditional" if conditional else "")


def budget_epochs(search: Mapping[str, Any]) -> tuple[int, str]:
    """The study's budget in epochs and where it comes from: ``max_total_epochs``; else ``max_trials`` trials
    of a Hyperband sweep's mean length; else ``hyperband_iterations`` sweeps (what bohb plans by itself).
    ``max_wall_time`` alone says nothing about epochs: the sweeps count then.

    >>> budget_epochs({"max_epochs": 27, "max_total_epochs": 500})
    (500, 'max_total_epochs 500')
    >>> budget_epochs({"max_epochs": 27})
    (375, 'one Hyperband sweep: 375 epochs')
    """
    options = SearchOptions.from_search(search)
    trials, epochs = sweep(int(search["max_epochs"]), options.factor)
    if search.get("max_total_epochs"):
        return int(search["max_total_epochs"]), f"max_total_epochs {search['max_total_epochs']}"
    if search.get("max_trials"):
        total = math.ceil(search["max_trials"] * epochs / trials)
        return total, f"max_trials {search['max_trials']} (~{total} epochs at a Hyperband sweep's mean trial length)"
    sweeps = options.hyperband_iterations
    what = "one Hyperband sweep" if sweeps == 1 else f"{sweeps} Hyperband sweeps"
    return sweeps * epochs, f"{what}: {sweeps * epochs} epochs"


def choose(search: Mapping[str, Any], space: SearchSpace, workers: int, *, objectives: int = 1) -> Choice:
    """Resolve ``auto`` for a ``[search]`` table (``max_epochs`` required), the study's space, the number of
    workers expected to train it at once, and its number of objectives. A pure function: the same inputs
    always give the same choice.

    Both picks sample with TPE, which takes every kind of hyperparameter, conditional ones and several
    objectives (promotions rank by the first), so neither the space nor the objectives rule one out; they
    are named in the reason. The depth (see the module) decides.

    >>> from hpsearch.space import SearchSpace
    >>> choice = choose({"max_epochs": 27, "max_total_epochs": 2000}, SearchSpace({"space": []}), workers=16)
    >>> choice.label, choice.options["hyperband_iterations"]
    ('bohb', 6)
    """
    max_epochs = int(search["max_epochs"])
    options = SearchOptions.from_search(search)
    if max_epochs < options.factor:
        raise ValueError(
            f"auto picks a multi-fidelity schedule and needs max_epochs >= factor "
            f"(got max_epochs {max_epochs}, factor {options.factor})"
        )
    if workers < 1:
        raise ValueError(f"auto needs a worker count >= 1 (got {workers})")
    budget, source = budget_epochs(search)
    depth = budget / (workers * max_epochs)
    threshold = DEPTH_BOHB
    inputs = (
        f"{workers} worker{'s' if workers > 1 else ''}, budget {source}, max_epochs {max_epochs}: "
        f"{depth:.1f} full-length trainings per worker"
    )
    facts = f"space: {describe_space(space)}" + (f"; {objectives} objectives" if objectives > 1 else "")
    sweep_epochs = sweep(max_epochs, options.factor)[1]
    if depth >= threshold:
        # Enough sweeps to spend the budget; a max_trials or max_total_epochs given ends the study first.
        iterations = max(options.hyperband_iterations, min(1000, math.ceil(budget / sweep_epochs)))
        why = f">= {threshold:g}: bohb is ahead there ({SOURCE})"
        return Choice(
            "bohb",
            {"hyperband_iterations": iterations},
            None,
            f"auto -> bohb: {inputs} {why}; {facts}",
        )
    # ASHA counts configurations: the user's max_trials as such; under max_total_epochs a cap it never reaches
    # (the epoch budget ends the study); else as many as the sweeps' epochs pay for.
    if search.get("max_trials"):
        configurations, cap = int(search["max_trials"]), "max_trials"
    elif search.get("max_total_epochs"):
        configurations, cap = math.ceil(budget / options.min_epochs), "at most; max_total_epochs ends it"
    else:
        per = asha_epochs_per_configuration(max_epochs, options.factor, options.min_epochs)
        configurations, cap = max(1, math.ceil(budget / per)), f"{per:.1f} epochs each"
    why = f"< {threshold:g}: asha with TPE is ahead there ({SOURCE})"
    return Choice(
        "asha",
        {"sampler": "tpe"},
        configurations,
        f"auto -> asha+tpe: {inputs} {why}; {configurations} configurations ({cap}); {facts}",
    )


def effective_search(search: Mapping[str, Any], choice: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``[search]`` table a coordinator builds: the study file's, with a stored ``auto`` choice's
    algorithm and options set (unchanged for every other study).

    >>> effective_search({"algorithm": "auto", "max_epochs": 9}, {"algorithm": "asha", "options": {"sampler": "tpe"}})
    {'algorithm': 'asha', 'max_epochs': 9, 'sampler': 'tpe'}
    >>> effective_search({"algorithm": "tpe", "max_epochs": 9}, None)["algorithm"]
    'tpe'
    """
    if choice is None or search.get("algorithm") != AUTO:
        return dict(search)
    options = {k: v for k, v in choice.get("options", {}).items() if k in _PICKED_OPTIONS}
    return {**{k: v for k, v in search.items() if k != "workers"}, "algorithm": choice["algorithm"], **options}
