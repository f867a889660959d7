"""A study file's validation errors: every one at once, each on its line, with hints for typos and Keras
Tuner habits; the CLI prints each as ``error: <where>: <what>``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import validate_spec

VALID = {
    "study": {"name": "s", "data": "d.py:f", "objective": "val_loss", "hypermodel": "m.py:b"},
    "search": {"max_trials": 5, "max_epochs": 2},
}


def errors_of(**tables: dict[str, object]) -> list[tuple[str, str]]:
    data = {name: dict(VALID.get(name, {})) | table for name, table in tables.items()}
    with pytest.raises(SpecError) as caught:
        validate_spec({**VALID, **data}, "s.toml")
    return [(caught.value.where, caught.value.what), *caught.value.also]


def test_every_error_is_reported_with_did_you_mean_and_keras_tuner_hints() -> None:
    found = errors_of(study={"sed": 1}, search={"max_trail": 3}, fit={"epochs": 3})
    assert found == [
        ("s.toml: study.sed", "unknown field; did you mean 'seed'?"),
        ("s.toml: search.max_trail", "unknown field; did you mean 'max_trials'?"),
        ("s.toml: fit.epochs", pytest.approx(found[2][1])),
    ]
    assert found[2][1].startswith("unknown field; a study file has this as search.max_epochs")


def test_one_error_has_nothing_more_and_no_count() -> None:
    found = errors_of(search={"max_epochs": 0})
    assert len(found) == 1
    assert found[0][0] == "s.toml: search.max_epochs" and "more)" not in found[0][1]


def test_a_name_far_from_every_field_gets_no_suggestion() -> None:
    assert errors_of(fit={"zzzzzz": 1}) == [("s.toml: fit.zzzzzz", "unknown field")]


def test_the_cli_prints_each_error_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[study]\nname = "s"\ndata = "d.py:f"\nhypermodel = "m.py:b"\nobjective = "val_loss"\nsed = 1\n'
        "[search]\nmax_trials = 2\nmax_epochs = 1\nmax_trail = 3\n[fit]\nepochs = 3\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "hpsearch", "study", "create", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == ["study.sed", "search.max_trail", "fit.epochs"], lines
    assert all(line.startswith(f"error: {path}: ") for line in lines)
