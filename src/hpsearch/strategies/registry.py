"""The algorithm registry: one entry per ``[search] algorithm`` name, holding the options it takes (fields
of :class:`~hpsearch.strategies.options.SearchOptions`, whose defaults are stated there once), its builder
(options -> :class:`Strategy`) and, for algorithms that size themselves, its planned-trial count. The study
file is validated against it (:mod:`hpsearch.spec`), and the coordinator builds strategies from it.

Importing this module is cheap: Optuna and scipy are imported when a model-based sampler first plans.

>>> entry = algorithm("hyperband")
>>> sorted(entry.options), entry.self_sized
(['factor', 'hyperband_iterations', 'sampler'], True)
>>> register_algorithm("first-x", sampler=lambda context, history, count: [{"x": 0.0}] * count)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UserCodeError
from hpsearch.strategies.base import Sampler, Scheduler, StudyContext
from hpsearch.strategies.options import COMMON_OPTIONS, SearchOptions, is_reference

if TYPE_CHECKING:
    from hpsearch.strategies.strategy import Strategy

# The samplers, schedulers and user-code modules are imported when a strategy is built, not with this module:
# the study-file validation (hpsearch.spec) reads the registry, and the worker imports the spec.


Builder = Callable[[SearchOptions, Path | None], "Strategy"]
PlannedCount = Callable[[SearchOptions, StudyContext], int]


@dataclass(frozen=True)
class Algorithm:
    """One registry entry. ``options``: the option fields it takes besides the common ones (budgets,
    ``initial_trials``); ``build(options, base_dir)``: its strategy (``base_dir`` resolves ``file.py``
    references); ``planned``: how many trials it plans by itself (None: ``max_trials`` is required);
    ``promotes``: its trials continue from a parent's checkpoint (so no cross-validation).

    >>> algorithm("grid").self_sized, algorithm("tpe").self_sized
    (True, False)
    """

    name: str
    options: frozenset[str]
    build: Builder
    planned: PlannedCount | None = None
    promotes: bool = False

    @property
    def self_sized(self) -> bool:
        """Whether it decides how many trials to run itself (``max_trials`` is then an optional cap)."""
        return self.planned is not None

    @property
    def takes(self) -> frozenset[str]:
        """Every option field it accepts (its own and the common ones)."""
        return self.options | COMMON_OPTIONS


_REGISTRY: dict[str, Algorithm] = {}
_OPTION_FIELDS = frozenset(SearchOptions.model_fields)


def algorithm(name: str) -> Algorithm:
    """The entry of ``name``; a ValueError naming the registered ones if there is none.

    >>> algorithm("asha").promotes
    True
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"no algorithm {name!r} is registered (registered: {', '.join(_REGISTRY)})") from None


def algorithms() -> list[str]:
    """The registered names, built-in ones first, in registration order.

    >>> algorithms()[:3]
    ['random', 'grid', 'bayesian']
    """
    return list(_REGISTRY)


def add_algorithm(entry: Algorithm, *, replace: bool = False) -> Algorithm:
    """Register a prepared entry (see :func:`register_algorithm` for the usual way).

    >>> def build(options, base_dir):
    ...     return Strategy(RandomSampler(), FullBudget())
    >>> add_algorithm(Algorithm("plain", frozenset(), build))  # doctest: +SKIP
    """
    unknown = entry.options - _OPTION_FIELDS
    if unknown:
        raise ValueError(f"algorithm {entry.name!r}: no such search options {sorted(unknown)}")
    if not entry.name or not isinstance(entry.name, str):
        raise ValueError(f"an algorithm name must be a non-empty string (got {entry.name!r})")
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"algorithm {entry.name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[entry.name] = entry
    return entry


def register_algorithm(
    name: str,
    build: Builder | None = None,
    *,
    sampler: Any = None,
    scheduler: Any = None,
    options: Iterable[str] = (),
    planned: PlannedCount | None = None,
    promotes: bool = False,
    replace: bool = False,
) -> Algorithm:
    """Register ``name`` for ``[search] algorithm = "<name>"`` in this process (the coordinator's: it builds
    the strategies; ``Study.run`` coordinates in the calling process).

    Give a ``build(options, base_dir) -> Strategy``, or a ``sampler`` and/or a ``scheduler``: a sampler is an
    Optuna ``BaseSampler``, a ``Sampler``, or a function ``(context, history, count) -> list[dict]``, or a
    function returning one of those; a scheduler is a ``Scheduler`` or a function returning one (default: every
    trial trains up to max_epochs). ``options`` names the :class:`SearchOptions` fields it takes (``pruner``
    and ``grace_epochs`` add median stopping to a sampler-and-scheduler entry).

    >>> import optuna  # doctest: +SKIP
    >>> register_algorithm("qmc", sampler=optuna.samplers.QMCSampler(seed=0))  # doctest: +SKIP
    >>> register_algorithm("first", sampler=lambda context, history, count: [{"x": 0.5}] * count)  # doctest: +SKIP
    """
    if build is None:
        from hpsearch.strategies.samplers import RandomSampler
        from hpsearch.strategies.schedulers import FullBudget
        from hpsearch.strategies.strategy import Strategy
        from hpsearch.strategies.user import as_sampler, as_scheduler

        # Resolved now, so a bad object fails here, not in the coordinator's first tick.
        user_sampler = as_sampler(sampler, where=f"algorithm {name!r} sampler") if sampler is not None else None
        user_scheduler = as_scheduler(scheduler, where=f"algorithm {name!r} scheduler") if scheduler else None

        def build(options: SearchOptions, base_dir: Path | None) -> Strategy:
            return Strategy(
                _seeded(user_sampler or RandomSampler(), options), _pruned(user_scheduler or FullBudget(), options)
            )

    elif sampler is not None or scheduler is not None:
        raise ValueError("give build, or sampler and scheduler, not both")
    return add_algorithm(Algorithm(name, frozenset(options), build, planned, promotes), replace=replace)


def unregister_algorithm(name: str) -> None:
    """Remove ``name`` (a no-op if it is not registered).

    >>> unregister_algorithm("no-such-algorithm")
    """
    _REGISTRY.pop(name, None)


# --- strategies of the [search] table --------------------------------------------------------------------------


def _seeded(sampler: Sampler, options: SearchOptions) -> Sampler:
    from hpsearch.strategies.samplers import SeededSampler

    return SeededSampler(sampler, options.initial_trials) if options.initial_trials else sampler


def _pruned(scheduler: Scheduler, options: SearchOptions) -> Scheduler:
    from hpsearch.strategies.schedulers import MedianStopping

    return MedianStopping(scheduler, grace_epochs=options.grace_epochs) if options.pruner == "median" else scheduler


def _sampler(name: str, options: SearchOptions, base_dir: Path | None) -> Sampler:
    from hpsearch.strategies.samplers import GridSampler, OptunaSampler, RandomSampler
    from hpsearch.strategies.user import sampler_from

    sampler: Sampler
    if is_reference(name):
        sampler = sampler_from(name, base_dir, options.model_window)
    elif name == "grid":
        sampler = GridSampler()
    elif name in ("tpe", "bayesian"):
        sampler = OptunaSampler(name, options.n_startup_trials, options.model_window)
    else:
        sampler = RandomSampler()
    return _seeded(sampler, options)


def _full_budget(sampler_name: str | None) -> Builder:
    """random / grid / tpe / bayesian: every trial to max_epochs, or a user scheduler; median stopping."""

    def build(options: SearchOptions, base_dir: Path | None) -> Strategy:
        from hpsearch.strategies.schedulers import FullBudget
        from hpsearch.strategies.strategy import Strategy
        from hpsearch.strategies.user import scheduler_from

        scheduler = scheduler_from(options.scheduler, base_dir) if options.scheduler else FullBudget()
        return Strategy(_sampler(sampler_name or options.sampler, options, base_dir), _pruned(scheduler, options))

    return build


def _hyperband(sampler_name: str | None) -> Builder:
    def build(options: SearchOptions, base_dir: Path | None) -> Strategy:
        from hpsearch.strategies.schedulers import Hyperband
        from hpsearch.strategies.strategy import Strategy

        sampler = _sampler(sampler_name or options.sampler, options, base_dir)
        return Strategy(sampler, Hyperband(options.factor, options.hyperband_iterations))

    return build


def _asha(options: SearchOptions, base_dir: Path | None) -> Strategy:
    from hpsearch.strategies.schedulers import ASHA
    from hpsearch.strategies.strategy import Strategy

    return Strategy(_sampler(options.sampler, options, base_dir), ASHA(options.factor, options.min_epochs))


def _grid_size(options: SearchOptions, context: StudyContext) -> int:
    # Counted, capped by max_trials: a grid of 10**12 combinations with max_trials = 5 plans 5 at once.
    return context.space.grid_size(limit=context.max_trials)


def _hyperband_size(options: SearchOptions, context: StudyContext) -> int:
    from hpsearch.strategies.schedulers import Hyperband

    return Hyperband(options.factor, options.hyperband_iterations).total_trials(context.max_epochs)


def _unresolved(*args: Any) -> Any:
    # auto is resolved once, when the study is created (hpsearch.strategies.auto): a coordinator builds the
    # recorded pick (effective_search), so an unresolved "auto" reaching here is a caller's mistake.
    raise ValueError(
        "algorithm 'auto' is resolved when the study is created; build the study's recorded choice "
        "(hpsearch.strategies.auto.effective_search)"
    )


_PRUNING = frozenset({"pruner", "grace_epochs", "scheduler"})
_MODEL = frozenset({"n_startup_trials", "model_window"})
_HYPERBAND = frozenset({"factor", "hyperband_iterations"})
# The order of the error that lists the algorithms (as the Literal type before the registry did).
for _entry in (
    Algorithm("random", _PRUNING | {"sampler"}, _full_budget(None)),
    Algorithm("grid", _PRUNING, _full_budget("grid"), planned=_grid_size),
    Algorithm("bayesian", _PRUNING | _MODEL, _full_budget("bayesian")),
    Algorithm("tpe", _PRUNING | _MODEL, _full_budget("tpe")),
    Algorithm("hyperband", _HYPERBAND | {"sampler"}, _hyperband(None), planned=_hyperband_size, promotes=True),
    Algorithm("asha", frozenset({"factor", "min_epochs", "sampler"}) | _MODEL, _asha, promotes=True),
    Algorithm("bohb", _HYPERBAND | _MODEL, _hyperband("tpe"), planned=_hyperband_size, promotes=True),
    # Self-sized (max_trials optional: the budget may come from the sweeps) and promoting (both picks do).
    Algorithm("auto", _HYPERBAND | _MODEL | {"workers"}, _unresolved, planned=_unresolved, promotes=True),
):
    add_algorithm(_entry)


def make_strategy(search: Mapping[str, Any], base_dir: str | Path | None = None) -> Strategy:
    """The strategy for a study file's ``[search]`` table (as stored with the study; missing options take
    their defaults). ``base_dir``: where ``file.py`` references of ``sampler`` / ``scheduler`` are found.

    >>> make_strategy({"algorithm": "hyperband", "factor": 3}).scheduler.factor
    3
    """
    entry = algorithm(search.get("algorithm", "random"))
    return entry.build(SearchOptions.from_search(search), Path(base_dir) if base_dir is not None else None)


def planned_trials(search: Mapping[str, Any], context: StudyContext) -> int:
    """How many trials a study will run: max_trials, or what the algorithm itself plans (grid, Hyperband),
    capped by max_trials when both are given.

    >>> from hpsearch.space import SearchSpace
    >>> context = StudyContext(SearchSpace({"space": [], "values": {}}), "max", 0, None, 9)  # doctest: +SKIP
    >>> planned_trials({"algorithm": "hyperband", "max_epochs": 9}, context)  # doctest: +SKIP
    28
    """
    entry = algorithm(search.get("algorithm", "random"))
    cap = search.get("max_trials")
    if entry.planned is None:
        return int(cap)  # type: ignore[arg-type]  # the spec requires max_trials of such an algorithm
    # The cap travels in the context, so an algorithm counts no further than it (a huge grid, capped).
    total = entry.planned(SearchOptions.from_search(search), dataclasses.replace(context, max_trials=cap or None))
    return min(total, cap) if cap else total


def check_user_code(
    search: Mapping[str, Any], base_dir: str | Path | None, source: str, context: StudyContext | None = None
) -> None:
    """Resolve a ``[search]`` table's ``sampler`` / ``scheduler`` references now (at study creation), so a bad
    one is one line naming the field and the study never starts; with ``context``, a plain-function sampler
    is also asked for one trial (it must return a list of parameter dicts).

    >>> check_user_code({"algorithm": "random", "sampler": "nosuchmodule:make"}, ".", "study.toml")  # doctest: +SKIP
    Traceback (most recent call last):
    UserCodeError: study.toml: search.sampler: import failed: ModuleNotFoundError: ...
    """
    from hpsearch.strategies.user import BadUserOutput, FunctionSampler, sampler_from, scheduler_from

    options = SearchOptions.from_search(search)
    base = Path(base_dir) if base_dir is not None else None
    if is_reference(options.sampler):
        try:
            sampler = sampler_from(options.sampler, base, options.model_window)
            if context is not None and isinstance(sampler, FunctionSampler):
                sampler.sample(context, [], 1)
        except UserCodeError as exc:
            raise UserCodeError(f"{source}: search.sampler", f"{exc.what} (got {options.sampler!r})") from None
        except BadUserOutput as exc:
            raise UserCodeError(f"{source}: search.sampler", f"{exc} (got {options.sampler!r})") from None
        except Exception as exc:
            what = f"raised {type(exc).__name__}: {exc}"
            raise UserCodeError(f"{source}: search.sampler", f"{what} (got {options.sampler!r})") from None
    if options.scheduler is not None:
        try:
            scheduler_from(options.scheduler, base)
        except UserCodeError as exc:
            raise UserCodeError(f"{source}: search.scheduler", f"{exc.what} (got {options.scheduler!r})") from None
