"""``algorithm = "auto"``: the rule (each branch, from the budget, the space and the worker count), what it sets in
[search], and the study-file checks of auto's options (one line naming the field and value, nothing written)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from hpsearch.errors import SpecError
from hpsearch.space import SearchSpace
from hpsearch.spec import validate_spec
from hpsearch.strategies import make_strategy
from hpsearch.strategies.auto import (
    DEPTH_BOHB,
    asha_epochs_per_configuration,
    budget_epochs,
    choose,
    describe_space,
    effective_search,
    sweep,
)
from hpsearch.strategies.schedulers import ASHA, Hyperband


def _float(name: str, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    config = {"name": name, "min_value": 0.0, "max_value": 1.0, "step": None, "sampling": "linear"}
    return {"class_name": "Float", "config": {**config, "conditions": conditions or []}}


SIX_FLOATS = SearchSpace({"space": [_float(f"x{i}") for i in range(6)]})
MIXED = SearchSpace(
    {
        "space": [
            {"class_name": "Boolean", "config": {"name": "deep", "default": False, "conditions": []}},
            {"class_name": "Choice", "config": {"name": "act", "values": ["relu", "tanh"], "conditions": []}},
            _float("lr"),
            _float("width", [{"class_name": "Parent", "config": {"name": "deep", "values": [True]}}]),
        ]
    }
)


def test_one_sweep_of_max_epochs_27_matches_keras_tuner_and_asha_costs_three_epochs_a_configuration() -> None:
    trials, epochs = sweep(27, 3)
    assert trials == Hyperband(3).total_trials(27) == 70
    assert epochs == 375  # the Keras Tuner Hyperband sweep of BENCHMARKS.md's tables
    assert asha_epochs_per_configuration(27, 3) == pytest.approx(1 + 2 / 3 + 6 / 9 + 18 / 27)
    assert ASHA(3, 1).rung_epochs(27) == [1, 3, 9, 27]


@pytest.mark.parametrize(
    ("workers", "label"),
    [(1, "bohb"), (2, "bohb"), (4, "bohb"), (8, "bohb"), (10, "bohb"), (11, "asha+tpe"), (16, "asha+tpe")],
)
def test_with_one_sweep_for_budget_the_worker_count_decides(workers: int, label: str) -> None:
    # One sweep = 375 epochs; depth = 375 / (workers * 27): 1.39 at 10 workers (>= 1.3), 1.26 at 11.
    choice = choose({"max_epochs": 27}, SIX_FLOATS, workers)
    assert choice.label == label
    assert (375 / (workers * 27) >= DEPTH_BOHB) == (label == "bohb")


def test_a_deep_budget_gives_bohb_with_enough_sweeps_to_spend_it_even_at_16_workers() -> None:
    choice = choose({"max_epochs": 27, "max_total_epochs": 2000}, SIX_FLOATS, workers=16)  # depth 4.6
    assert choice.algorithm == "bohb" and choice.label == "bohb"
    assert choice.options == {"hyperband_iterations": math.ceil(2000 / 375)}
    assert choice.max_trials is None  # bohb sizes itself (the coordinator's max_total_epochs ends it)
    assert "16 workers" in choice.reason and "max_total_epochs 2000" in choice.reason


def test_the_depth_decides_whatever_the_worker_count() -> None:
    # depth 2.5 at 2 and at 16 workers: bohb both times; depth 1 at both: asha+tpe.
    assert choose({"max_epochs": 27, "max_total_epochs": 135}, SIX_FLOATS, workers=2).label == "bohb"
    assert choose({"max_epochs": 27, "max_total_epochs": 1080}, SIX_FLOATS, workers=16).label == "bohb"
    assert choose({"max_epochs": 27, "max_total_epochs": 54}, SIX_FLOATS, workers=2).label == "asha+tpe"
    assert choose({"max_epochs": 27, "max_total_epochs": 432}, SIX_FLOATS, workers=16).label == "asha+tpe"


def test_a_shallow_budget_gives_asha_with_tpe_even_at_one_worker() -> None:
    choice = choose({"max_epochs": 27, "max_total_epochs": 27}, SIX_FLOATS, workers=1)  # depth 1
    assert choice.algorithm == "asha" and choice.options == {"sampler": "tpe"}
    assert choice.label == "asha+tpe"
    assert choice.max_trials == 27  # a cap never reached: 27 epochs at min_epochs 1 each


@pytest.mark.parametrize("workers", [4, 16])
def test_the_threshold_itself_picks_bohb(workers: int) -> None:
    exact = math.ceil(DEPTH_BOHB * workers * 27)
    assert choose({"max_epochs": 27, "max_total_epochs": exact}, SIX_FLOATS, workers).label == "bohb"
    assert choose({"max_epochs": 27, "max_total_epochs": exact - 1}, SIX_FLOATS, workers).label == "asha+tpe"


def test_asha_counts_configurations_from_each_kind_of_budget() -> None:
    given = choose({"max_epochs": 27, "max_trials": 40}, SIX_FLOATS, workers=16)
    assert given.label == "asha+tpe" and given.max_trials == 40  # the user's max_trials, as configurations
    sweeps = choose({"max_epochs": 27}, SIX_FLOATS, workers=16)
    assert sweeps.max_trials == 125  # 375 epochs / 3 epochs a configuration
    assert choose({"max_epochs": 27, "hyperband_iterations": 2}, SIX_FLOATS, workers=32).max_trials == 250


def test_budget_in_epochs_from_each_source() -> None:
    assert budget_epochs({"max_epochs": 27, "max_total_epochs": 900, "max_trials": 5})[0] == 900
    assert budget_epochs({"max_epochs": 27, "max_trials": 140})[0] == 750  # 140 trials of 375 / 70 epochs
    assert budget_epochs({"max_epochs": 27, "hyperband_iterations": 3})[0] == 1125
    # max_wall_time alone says nothing of epochs: the sweeps count.
    assert budget_epochs({"max_epochs": 27, "max_wall_time": 3600.0})[0] == 375


def test_the_space_and_objectives_are_named_but_do_not_change_the_pick() -> None:
    plain = choose({"max_epochs": 27}, SIX_FLOATS, workers=2)
    mixed = choose({"max_epochs": 27}, MIXED, workers=2, objectives=2)
    assert plain.label == mixed.label == "bohb"
    assert "space: 6 floats" in plain.reason
    assert "space: 1 boolean + 1 choice + 2 floats, 1 conditional; 2 objectives" in mixed.reason
    assert describe_space(SearchSpace({"space": []})) == "no hyperparameters"


def test_the_rule_is_a_pure_function() -> None:
    search = {"max_epochs": 81, "factor": 3, "max_trials": 300}
    assert choose(search, MIXED, 8) == choose(dict(search), MIXED, 8)


@pytest.mark.parametrize(
    ("search", "workers", "message"),
    [
        ({"max_epochs": 2}, 1, "max_epochs >= factor (got max_epochs 2, factor 3)"),
        ({"max_epochs": 27}, 0, "worker count >= 1 (got 0)"),
    ],
)
def test_the_rule_refuses_what_no_pick_can_run(search: dict[str, Any], workers: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose(search, SIX_FLOATS, workers)


def test_effective_search_sets_the_recorded_pick_and_nothing_else() -> None:
    stored = {"algorithm": "auto", "max_epochs": 27, "max_trials": 9, "workers": 16, "sampler": "random"}
    record = {"algorithm": "asha", "options": {"sampler": "tpe", "max_trials": 1}, "reason": "r"}
    search = effective_search(stored, record)
    assert search == {"algorithm": "asha", "max_epochs": 27, "max_trials": 9, "sampler": "tpe"}  # budgets kept
    assert type(make_strategy(search).scheduler).__name__ == "ASHA"
    assert effective_search({"algorithm": "tpe", "max_epochs": 3}, record)["algorithm"] == "tpe"
    assert effective_search(stored, None) == stored


def test_an_unresolved_auto_is_never_built() -> None:
    with pytest.raises(ValueError, match="resolved when the study is created"):
        make_strategy({"algorithm": "auto", "max_epochs": 27})


# --- the study file ------------------------------------------------------------------------------------------


def _spec(**search: Any) -> dict[str, Any]:
    return {
        "study": {"name": "s", "hypermodel": "m.py:build", "data": "m.py:load", "objective": "val_accuracy"},
        "search": {"algorithm": "auto", "max_epochs": 27, **search},
    }


def test_auto_needs_no_max_trials_and_takes_the_worker_count() -> None:
    spec = validate_spec(_spec(workers=16, factor=3, n_startup_trials=5), "s.toml")
    assert spec.search.algorithm == "auto" and spec.search.workers == 16


@pytest.mark.parametrize(
    ("search", "field", "words"),
    [
        ({"max_epochs": 2}, "search", "auto picks bohb or asha, which need max_epochs >= factor (got max_epochs 2"),
        ({"factor": 30}, "search", "(got max_epochs 27, factor 30)"),
        ({"sampler": "tpe"}, "search", "option 'sampler' does not apply to algorithm 'auto'"),
        ({"pruner": "median"}, "search", "option 'pruner' does not apply to algorithm 'auto'"),
        ({"min_epochs": 3}, "search", "option 'min_epochs' does not apply to algorithm 'auto'"),
        ({"cv_folds": 3}, "search", "cv_folds does not combine with 'auto'"),
        ({"workers": 0}, "search.workers", "greater than or equal to 1"),
    ],
)
def test_bad_auto_options_are_one_line_naming_field_and_value(search: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_spec(_spec(**search), "s.toml")
    text = str(caught.value)
    assert f"s.toml: {field}" in text and words in text, text


def test_workers_does_not_apply_to_a_named_algorithm() -> None:
    with pytest.raises(SpecError, match="option 'workers' does not apply to algorithm 'bohb'"):
        validate_spec(_spec(algorithm="bohb", workers=8), "s.toml")


def test_a_bad_auto_study_file_exits_non_zero_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ..cli.clirun import run_cli

    path = tmp_path / "s.toml"
    path.write_text(
        '[study]\nname = "s"\nhypermodel = "m.py:build"\ndata = "m.py:load"\nobjective = "val_accuracy"\n'
        '[search]\nalgorithm = "auto"\nmax_epochs = 2\n'
    )
    db = tmp_path / "h.db"
    code, _, err = run_cli(["study", "create", str(path), "--db", f"sqlite:///{db}"], capsys)
    assert code != 0
    assert "s.toml: search" in err and "max_epochs >= factor (got max_epochs 2, factor 3)" in err
    assert not db.exists() or db.stat().st_size == 0  # nothing written
