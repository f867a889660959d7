"""User samplers and schedulers named in a study's [search] table plan trials in a coordinator run (SQLite and
PostgreSQL); a bad reference is one line at study creation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpsearch.control.coordinator import Coordinator
from hpsearch.errors import UserCodeError
from hpsearch.space import SearchSpace
from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.models import Study
from hpsearch.strategies import StudyContext, check_user_code, make_strategy

from ..conftest import UNIT_X_SPACE, add_study

# An Optuna sampler whose proposal shows what it was given: x = (trials in the Optuna study before it) / 10.
# hpsearch hands it the history (finished trials and pending ones) through its Optuna path.
OPTUNA_SAMPLER = """
import optuna

SEEDS = []


class Ladder(optuna.samplers.BaseSampler):
    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        return (len(study.get_trials(deepcopy=False)) - 1) / 10


def make_sampler(seed):
    SEEDS.append(seed)
    return Ladder()


not_callable = 3


def wrong_type():
    return 42


def broken():
    raise RuntimeError("no sampler today")
"""

FUNCTION_SAMPLER = """
def propose(context, history, count):
    return [{"x": (len(history) + i) / 20} for i in range(count)]


def make_propose():
    return propose


def bad_propose(context, history, count):
    return {"x": 0.5}
"""

SCHEDULER = '''
from hpsearch.strategies import NewTrial


class OneEpoch:
    """Every trial trains one epoch; max_trials of them."""

    def plan(self, context, history, sampler, slots):
        count = min(slots, context.max_trials - len(history))
        return [NewTrial(p, 1) for p in sampler.sample(context, history, count)] if count > 0 else []

    def is_finished(self, context, history, sampler):
        return len(history) >= context.max_trials

    def to_stop(self, context, history):
        return []


def not_a_scheduler():
    return object()
'''


def write_user_code(directory: Path) -> None:
    (directory / "ladder.py").write_text(OPTUNA_SAMPLER, encoding="utf-8")
    (directory / "propose.py").write_text(FUNCTION_SAMPLER, encoding="utf-8")
    (directory / "onepoch.py").write_text(SCHEDULER, encoding="utf-8")


def user_study(store: Store, name: str, base_dir: Path, max_trials: int = 6, **search: object) -> Study:
    study = add_study(store, name)
    spec = {**study.spec, "search": {**study.spec["search"], **search, "max_trials": max_trials, "max_epochs": 2}}
    with store.session() as session:
        row = session.get_one(Study, study.id)
        row.spec, row.max_trials, row.max_epochs = spec, max_trials, 2
        row.space, row.base_dir = UNIT_X_SPACE, str(base_dir)
    return store.study_by_id(study.id)


def run_simulated(store: Store, study: Study) -> list[Any]:
    """One simulated worker trains the queued trials until the coordinator closes the study."""
    coordinator = Coordinator(store, [study.name], prefetch=0)
    worker = store.register_worker(f"sim-{study.name}", "host", 1, None)
    for _ in range(200):
        if not coordinator.step(store.study_by_id(study.id), target_queued=1):
            break
        claimed = store.claim(worker, study.id)
        if claimed is None:
            continue
        x = float(claimed.params["x"])
        for epoch in range(claimed.initial_epoch + 1, claimed.budget_epochs + 1):
            store.record_epoch(claimed.trial_id, worker, epoch, {"val_accuracy": x}, "val_accuracy", "max")
        store.finish(claimed.trial_id, worker, TrialState.COMPLETED)
    assert store.study_by_id(study.id).state == StudyState.COMPLETED
    return store.trials(study.id)


def test_a_user_optuna_sampler_plans_through_the_optuna_path(store: Store, tmp_path: Path) -> None:
    write_user_code(tmp_path)
    study = user_study(store, "ladder", tmp_path, algorithm="random", sampler="ladder.py:make_sampler")
    trials = run_simulated(store, study)
    # Each proposal saw every earlier trial: the history reached the user's sampler.
    assert [t.params["x"] for t in trials] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert all(t.budget_epochs == 2 for t in trials)


def test_a_user_optuna_sampler_under_hyperband(store: Store, tmp_path: Path) -> None:
    write_user_code(tmp_path)
    study = user_study(store, "hb-ladder", tmp_path, 1000, algorithm="hyperband", sampler="ladder.py:make_sampler")
    trials = run_simulated(store, study)
    fresh = [t.params["x"] for t in trials if t.parent_trial_id is None]
    assert len(fresh) == len(set(fresh)) > 1  # new configurations come from the user's sampler, each distinct


def test_a_plain_function_sampler_and_a_user_scheduler(store: Store, tmp_path: Path) -> None:
    write_user_code(tmp_path)
    study = user_study(
        store, "func", tmp_path, 5, algorithm="random", sampler="propose.py:propose", scheduler="onepoch.py:OneEpoch"
    )
    trials = run_simulated(store, study)
    assert [t.params["x"] for t in trials] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert [t.budget_epochs for t in trials] == [1] * 5  # the user's scheduler, not max_epochs = 2


def test_a_factory_returning_a_function_and_a_module_reference(tmp_path: Path) -> None:
    write_user_code(tmp_path)
    context = StudyContext(SearchSpace(UNIT_X_SPACE), "max", 0, 4, 2)
    strategy = make_strategy({"algorithm": "asha", "sampler": "propose:make_propose"}, tmp_path)
    assert [t.params for t in strategy.plan(context, [], 2)] == [{"x": 0.0}, {"x": 0.05}]


def test_a_user_optuna_sampler_gets_a_seed_from_the_study_seed_and_history(tmp_path: Path) -> None:
    write_user_code(tmp_path)
    context = StudyContext(SearchSpace(UNIT_X_SPACE), "max", 7, 4, 2)
    strategy = make_strategy({"sampler": "ladder.py:make_sampler"}, tmp_path)
    ladder = strategy.sampler.factory  # type: ignore[attr-defined]
    seeds = ladder.__globals__["SEEDS"]
    strategy.plan(context, [], 1)
    strategy.plan(context, [], 1)
    assert seeds[-1] == seeds[-2]  # the same history and seed: the same sampler (a restart plans the same)


@pytest.mark.parametrize(
    ("field", "reference", "what"),
    [
        ("sampler", "nosuchmodule_xyz:make", "import failed: ModuleNotFoundError: No module named 'nosuchmodule_xyz'"),
        ("sampler", "missing.py:make", "no such file"),
        ("sampler", "ladder.py:nothing", "ladder.py has no attribute 'nothing'"),
        ("sampler", "ladder.py:not_callable", "is int, not an optuna BaseSampler"),
        ("sampler", "ladder.py:wrong_type", "returned int, not an optuna BaseSampler"),
        ("sampler", "ladder.py:broken", "raised RuntimeError: no sampler today"),
        ("sampler", "propose.py:bad_propose", "sampler bad_propose returned dict, not a list of parameter dicts"),
        ("scheduler", "onepoch.py:not_a_scheduler", "returned object, not a Scheduler"),
        ("scheduler", "onepoch.py:NoSuch", "onepoch.py has no attribute 'NoSuch'"),
    ],
)
def test_a_bad_reference_is_one_line_naming_the_field(tmp_path: Path, field: str, reference: str, what: str) -> None:
    write_user_code(tmp_path)
    context = StudyContext(SearchSpace(UNIT_X_SPACE), "max", 0, 4, 2)
    with pytest.raises(UserCodeError) as caught:
        check_user_code({"algorithm": "random", field: reference}, tmp_path, "study.toml", context)
    message = str(caught.value)
    assert message.startswith(f"study.toml: search.{field}: ") and what in message, message
    assert message.endswith(f"(got {reference!r})") and "\n" not in message


def test_study_creation_refuses_a_bad_reference_before_any_row(tmp_path: Path) -> None:
    from hpsearch.control.studies import study_row
    from hpsearch.spec import validate_spec

    write_user_code(tmp_path)
    data = {
        "study": {"name": "bad", "hypermodel": "m.py:build", "data": "m.py:data", "objective": "val_accuracy"},
        "search": {"max_trials": 2, "max_epochs": 1, "sampler": "ladder.py:wrong_type"},
    }
    spec = validate_spec(data, "study.toml")
    with pytest.raises(UserCodeError, match=r"study.toml: search.sampler: returned int"):
        study_row(spec, tmp_path / "study.toml", UNIT_X_SPACE, tmp_path / "artifacts")
    good = validate_spec({**data, "search": {**data["search"], "sampler": "ladder.py:make_sampler"}}, "study.toml")
    row = study_row(good, tmp_path / "study.toml", UNIT_X_SPACE, tmp_path / "artifacts")
    assert row.spec["search"]["sampler"] == "ladder.py:make_sampler" and row.base_dir == str(tmp_path.resolve())


def test_a_reference_the_coordinator_cannot_import_fails_the_study(store: Store, tmp_path: Path) -> None:
    study = user_study(store, "gone", tmp_path, algorithm="random", sampler="vanished.py:make_sampler")
    coordinator = Coordinator(store, ["gone"], prefetch=0)
    coordinator.tick()
    final = store.study_by_id(study.id)
    assert final.state == StudyState.FAILED and "vanished.py" in (final.message or "")
