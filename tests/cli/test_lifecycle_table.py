"""docs/schema.md's table of study states x commands is what the Python API does: every cell walked on
SQLite and PostgreSQL (`hpsearch run` is checked end to end in tests/test_cli_lifecycle.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from hpsearch.api import Study
from hpsearch.errors import UsageError
from hpsearch.store import Store, StudyState

from ..conftest import add_study

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
COMMANDS: dict[str, Callable[[Study], None]] = {
    "`study stop`": lambda study: study.stop(),
    "`study resume`": lambda study: study.resume(),
    "`study extend`": lambda study: study.extend(max_trials=5000),
    "`study rename`": lambda study: study.rename("renamed"),
    "`study delete`": lambda study: study.delete(),
}


def documented_table() -> dict[tuple[str, str], str]:
    """(state, command) -> the cell's first word: a state, "refused" or "gone"."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### What each command does in each state") :]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        state = cells[0].strip("`")
        for command, cell in zip(header[1:], cells[1:], strict=True):
            word = re.match(r"`?(\w+)", cell)
            assert word is not None, cell
            table[(state, command)] = word.group(1)
    return table


def test_the_table_covers_every_state_and_command() -> None:
    table = documented_table()
    assert {state for state, _ in table} == {state.value for state in StudyState}
    assert {command for _, command in table} == {*COMMANDS, "`hpsearch run`"}


@pytest.mark.parametrize("state", [state.value for state in StudyState])
def test_each_command_in_each_state_does_what_the_table_says(store: Store, state: str) -> None:
    table = documented_table()
    for command, apply in COMMANDS.items():
        for name in ("demo", "renamed"):
            if name in {s.name for s in store.studies()}:
                store.delete_study(store.study(name).id)
        record = add_study(store, "demo")
        store.set_study_state(record.id, StudyState(state), "set by the test")
        study = Study(store, "demo")
        expected = table[(state, command)]
        if expected == "refused":
            with pytest.raises(UsageError) as refused:
                apply(study)
            assert f"is {state}" in refused.value.what, (state, command)
            assert store.study("demo").state == state, (state, command)  # nothing changed
            continue
        apply(study)
        names = {s.name for s in store.studies()}
        if expected == "gone":
            assert names == set(), (state, command)
        else:
            assert store.study(study.name).state == expected, (state, command)
