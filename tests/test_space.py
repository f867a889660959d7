from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from hpsearch.errors import SpecError, UserCodeError
from hpsearch.execution.discovery import discover_space
from hpsearch.execution.loading import load_hypermodel
from hpsearch.space import SearchSpace, override_config
from hpsearch.spec import ChoiceParam, FloatParam

from .conftest import write_tiny_study


def kt_entry(class_name: str, name: str, conditions: list | None = None, **config: object) -> dict:  # type: ignore[type-arg]
    parents = [{"class_name": "Parent", "config": {"name": n, "values": v}} for n, v in (conditions or [])]
    return {"class_name": class_name, "config": {"name": name, "conditions": parents, **config}}


SPACE = SearchSpace(
    {
        "space": [
            kt_entry("Int", "units", min_value=32, max_value=256, step=32, sampling="linear"),
            kt_entry("Float", "lr", min_value=1e-4, max_value=1e-1, step=None, sampling="log"),
            kt_entry("Choice", "model", values=["mlp", "cnn"], ordered=False),
            kt_entry("Int", "filters", [("model", ["cnn"])], min_value=8, max_value=16, step=8, sampling="linear"),
            kt_entry("Boolean", "dropout", default=False),
            kt_entry("Float", "rate", [("dropout", [True])], min_value=0.1, max_value=0.3, step=0.1, sampling="linear"),
            kt_entry("Fixed", "seed", value=3),
        ]
    }
)


def test_samples_stay_in_range_and_respect_conditions() -> None:
    rng = random.Random(0)
    for _ in range(300):
        values = SPACE.sample(rng)
        assert values["units"] in range(32, 257, 32)
        assert 1e-4 <= values["lr"] <= 1e-1
        assert ("filters" in values) == (values["model"] == "cnn")
        assert ("rate" in values) == values["dropout"]
        assert values["seed"] == 3
        if "rate" in values:
            assert any(math.isclose(values["rate"], r) for r in (0.1, 0.2, 0.3))


def test_log_sampling_covers_decades_evenly() -> None:
    rng = random.Random(1)
    lrs = [SPACE.sample(rng)["lr"] for _ in range(3000)]
    below_1e3 = sum(lr < 1e-3 for lr in lrs) / len(lrs)
    assert 0.28 < below_1e3 < 0.39  # one decade of three


def test_grid_varies_conditional_parameters_only_inside_their_branch() -> None:
    grid = list(SPACE.grid())
    # units 8 x lr 10 x (mlp + cnn with 2 filters) x (no dropout + 3 rates) x fixed
    assert len(grid) == 8 * 10 * 3 * 4
    assert len({tuple(sorted(g.items())) for g in grid}) == len(grid)
    assert all(("filters" in g) == (g["model"] == "cnn") for g in grid)


def test_merged_with_adds_only_new_parameters() -> None:
    extra = {"space": [kt_entry("Int", "batch_size", min_value=16, max_value=64, step=16, sampling="linear")]}
    merged = SPACE.merged_with({"space": SPACE.config["space"] + extra["space"]})
    assert merged.names == (*SPACE.names, "batch_size")
    assert SPACE.merged_with(SPACE.config) is SPACE


def test_discovery_finds_parameters_inside_every_branch(tmp_path: Path) -> None:
    write_tiny_study(tmp_path)
    space = discover_space(load_hypermodel("tiny.py:build_model", tmp_path), "tiny.py:build_model")
    names = [entry["config"]["name"] for entry in space["space"]]
    # "extra_units" hides behind `if hp.Boolean("extra")`; it joins after the first build's parameters.
    assert names == ["units", "act", "extra", "lr", "extra_units"]
    extra_units = space["space"][4]["config"]
    assert extra_units["conditions"][0]["config"] == {"name": "extra", "values": [True]}


def test_discovery_reports_a_hypermodel_that_raises(tmp_path: Path) -> None:
    write_tiny_study(tmp_path, extra_module="\n\ndef broken(hp):\n    raise RuntimeError('no GPU here')\n")
    with pytest.raises(UserCodeError, match="raised RuntimeError: no GPU here"):
        discover_space(load_hypermodel("tiny.py:broken", tmp_path), "tiny.py:broken")


def test_overrides_replace_declarations_and_reject_type_changes() -> None:
    overridden = override_config(SPACE.config, {"lr": FloatParam(type="float", min=0.01, max=0.02)}, "s.toml")
    lr = SearchSpace(overridden).params[1]
    assert (lr.low, lr.high, lr.log) == (0.01, 0.02, False)
    with pytest.raises(SpecError, match="declared as choice here but as float"):
        override_config(SPACE.config, {"lr": ChoiceParam(type="choice", values=[0.1])}, "s.toml")
    with pytest.raises(SpecError, match="declares no parameter"):
        override_config(SPACE.config, {"nope": ChoiceParam(type="choice", values=[1])}, "s.toml")
