"""docs/schema.md stays true: it documents every column of every table and of the trial_summary view (with
the right types), every state, and its five analyst queries run on SQLite and PostgreSQL with the answers
the data says they should give."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hpsearch.records import NewTrial
from hpsearch.store import Store, StudyRecord, StudyState, TrialState
from hpsearch.store.db import make_engine, upgrade
from hpsearch.store.models import TRIAL_SUMMARY_SQL, Base, Trial

from ..conftest import add_study

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
HEADING = re.compile(r"^#{1,6} .*$", re.MULTILINE)
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """Heading line -> the text up to the next heading."""
    headings = list(HEADING.finditer(text))
    return {
        m.group(0): text[m.end() : headings[i + 1].start() if i + 1 < len(headings) else len(text)]
        for i, m in enumerate(headings)
    }


def documented_columns(name: str) -> dict[str, list[str]]:
    """The rows of the column table under the ``### `name` `` heading: column name -> the other cells."""
    found = [body for heading, body in sections(doc_text()).items() if re.match(rf"^### `{name}`( |$)", heading)]
    assert len(found) == 1, f"docs/schema.md needs exactly one '### `{name}`' section, found {len(found)}"
    rows: dict[str, list[str]] = {}
    for line in found[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"`\w+`", cells[0]):
            column = cells[0].strip("`")
            assert column not in rows, f"{name}.{column} is documented twice"
            rows[column] = cells[1:]
    return rows


def view_sources() -> dict[str, str]:
    """trial_summary's columns from its SQL in models.py: alias -> ``table.column``."""
    tables = dict((alias, table) for table, alias in re.findall(r"(?:FROM|JOIN)\s+(\w+)\s+(\w+)", TRIAL_SUMMARY_SQL))
    select_list = TRIAL_SUMMARY_SQL.split("SELECT", 1)[1].split("FROM", 1)[0]
    columns = re.findall(r"(\w+)\.(\w+)\s+AS\s+(\w+)", select_list)
    assert len(columns) == select_list.count(",") + 1, "every trial_summary column is `alias.column AS name`"
    return {name: f"{tables[alias]}.{column}" for alias, column, name in columns}


@pytest.mark.parametrize("table", sorted(Base.metadata.tables))
def test_every_table_column_is_documented(table: str) -> None:
    documented = documented_columns(table)
    columns = Base.metadata.tables[table].columns
    assert sorted(documented) == sorted(c.name for c in columns), f"columns of {table} in docs/schema.md"
    for column in columns:
        type_, null, meaning = documented[column.name][:3]
        assert type_ == str(column.type), f"{table}.{column.name}: type"
        assert null == ("yes" if column.nullable else "no"), f"{table}.{column.name}: null"
        assert meaning, f"{table}.{column.name}: meaning"


def test_every_view_column_is_documented(tmp_path: Path) -> None:
    sources = view_sources()
    engine = make_engine(f"sqlite:///{tmp_path / 'hpsearch.db'}")
    try:
        upgrade(engine)  # the view the migrations really create has the columns of models.py's SQL
        reflected = [c["name"] for c in sa.inspect(engine).get_columns("trial_summary")]
    finally:
        engine.dispose()
    assert reflected == list(sources)
    documented = documented_columns("trial_summary")
    assert list(documented) == list(sources), "trial_summary columns (in view order) in docs/schema.md"
    for name, source in sources.items():
        assert documented[name][0] == f"`{source}`", f"trial_summary.{name}: source"
        assert documented[name][1], f"trial_summary.{name}: meaning"


@pytest.mark.parametrize("heading, states", [("Trial states", TrialState), ("Study states", StudyState)])
def test_every_state_is_documented(heading: str, states: type[TrialState] | type[StudyState]) -> None:
    body = sections(doc_text())[f"## {heading}"]
    documented = re.findall(r"^\| `(\w+)` \|", body, re.MULTILINE)
    assert documented == [state.value for state in states]


def sql_blocks() -> list[str]:
    """The analyst queries: the sql blocks of the section "Five analyst queries"."""
    text = doc_text()
    start = text.index("## Five analyst queries")
    end = text.find("\n## ", start + 1)
    text = text[start : end if end != -1 else len(text)]
    blocks = list(SQL_BLOCK.finditer(text))
    for block in blocks:
        before = text[: block.start()].rstrip().splitlines()
        assert before[-1].startswith("### "), f"every sql block follows a one-line heading: {before[-1]!r}"
    return [block.group(1).strip() for block in blocks]


def test_there_are_five_queries() -> None:
    blocks = sql_blocks()
    assert len(blocks) == 5
    assert doc_text().index("## Five analyst queries") < doc_text().index("```sql")
    assert len(SQL_BLOCK.findall(doc_text())) == 6  # and the read-only role


# --- the queries, on both databases ------------------------------------------------------------------------

# number -> (params, val_accuracy after epochs 1 and 2); all COMPLETED.
DEMO: dict[int, tuple[dict[str, Any], tuple[float, float]]] = {
    0: ({"activation": "relu", "lr": 0.001, "units": 32}, (0.6, 0.75)),
    1: ({"activation": "tanh", "lr": 0.01, "units": 32}, (0.7, 0.65)),
    2: ({"activation": "relu", "lr": 0.0001, "units": 32}, (0.5, 0.8)),
}
# Left QUEUED: no objective, no worker; the queries on completed or finished trials must skip it.
QUEUED_PARAMS: dict[str, Any] = {"activation": "tanh", "lr": 0.002, "units": 64}


def run_trial(store: Store, study: StudyRecord, worker_id: int, accuracies: tuple[float, ...]) -> int:
    claimed = store.claim(worker_id, study.id)
    assert claimed is not None
    for epoch, accuracy in enumerate(accuracies, start=1):
        logs = {"loss": 1.0 - accuracy / 2, "val_accuracy": accuracy}
        assert store.record_epoch(claimed.trial_id, worker_id, epoch, logs, study.objective_name, study.direction)
    assert store.finish(claimed.trial_id, worker_id, TrialState.COMPLETED)
    return claimed.number


def query(store: Store, sql: str) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row) for row in connection.execute(sa.text(sql)).mappings()]


def test_analyst_queries(store: Store) -> None:
    demo = add_study(store, "demo")
    new = [NewTrial(params=params, budget_epochs=2) for params, _ in DEMO.values()]
    assert store.add_trials(demo, [*new, NewTrial(params=QUEUED_PARAMS, budget_epochs=2)]) == [0, 1, 2, 3]
    first = store.register_worker("worker-a", "host-a", 101, None)
    second = store.register_worker("worker-b", "host-b", 102, "0")
    ran_by = {first: [run_trial(store, demo, first, DEMO[0][1]), run_trial(store, demo, first, DEMO[1][1])]}
    ran_by[second] = [run_trial(store, demo, second, DEMO[2][1])]
    assert ran_by == {first: [0, 1], second: [2]}
    # Another study, better on every count: no query may mix it in.
    other = add_study(store, "other")
    store.add_trials(other, [NewTrial(params={"activation": "relu", "lr": 0.001, "units": 32}, budget_epochs=2)])
    run_trial(store, other, second, (0.98, 0.99))

    trials = {t.number: t for t in store.trials(demo.id)}
    objectives = {number: max(curve) for number, (_, curve) in DEMO.items()}
    assert {n: trials[n].objective for n in DEMO} == objectives
    assert trials[3].state == TrialState.QUEUED

    top, curve, per_activation, lr_range, per_worker = sql_blocks()

    # 1. best first (the study maximises), completed only.
    best = sorted(DEMO, key=lambda n: -objectives[n])
    rows = query(store, top)
    assert [r["number"] for r in rows] == best
    assert [r["objective"] for r in rows] == pytest.approx([objectives[n] for n in best])
    assert rows[0]["objective"] == pytest.approx(max(max(curve) for _, curve in DEMO.values()))
    assert [r["best_epoch"] for r in rows] == [DEMO[n][1].index(objectives[n]) + 1 for n in best]
    assert [r["worker"] for r in rows] == ["worker-b", "worker-a", "worker-a"]

    # 2. trial 0's val_accuracy, epochs from 1.
    rows = query(store, curve)
    assert [(r["epoch"], r["value"]) for r in rows] == [(1, pytest.approx(0.6)), (2, pytest.approx(0.75))]

    # 3. mean (and range) of the objective per activation over completed trials.
    groups: dict[str, list[float]] = {}
    for number, (params, _) in DEMO.items():
        groups.setdefault(params["activation"], []).append(objectives[number])
    rows = query(store, per_activation)
    assert [r["activation"] for r in rows] == sorted(groups)
    for row in rows:
        values = groups[row["activation"]]
        assert row["trials"] == len(values)
        assert row["mean_objective"] == pytest.approx(sum(values) / len(values))
        assert (row["min_objective"], row["max_objective"]) == pytest.approx((min(values), max(values)))
    assert {r["activation"]: r["mean_objective"] for r in rows} == pytest.approx({"relu": 0.775, "tanh": 0.7})

    # 4. lr in [0.0005, 0.05]: trials 0 and 1, and the queued trial 3 (no objective yet); not trial 2.
    low, high = (float(v) for v in re.findall(r"BETWEEN\s+([\d.]+)\s+AND\s+([\d.]+)", lr_range)[0])
    every_lr = {**{n: params["lr"] for n, (params, _) in DEMO.items()}, 3: QUEUED_PARAMS["lr"]}
    expected = sorted((lr, n) for n, lr in every_lr.items() if low <= lr <= high)
    assert [n for _, n in expected] == [0, 3, 1]
    rows = query(store, lr_range)
    assert [r["number"] for r in rows] == [n for _, n in expected]
    assert [r["lr"] for r in rows] == pytest.approx([lr for lr, _ in expected])
    assert [r["objective"] for r in rows] == [objectives.get(n) for _, n in expected]
    assert [r["state"] for r in rows] == [trials[n].state for _, n in expected]

    # 5. finished demo trials and their time per worker.
    rows = query(store, per_worker)
    assert [(r["worker"], r["host"], r["trials"], r["completed"]) for r in rows] == [
        ("worker-a", "host-a", 2, 2),
        ("worker-b", "host-b", 1, 1),
    ]
    for row, worker in zip(rows, (first, second), strict=True):
        durations = [trials[n].duration_seconds for n in ran_by[worker]]
        assert all(d is not None and d >= 0 for d in durations)
        assert row["total_seconds"] == pytest.approx(sum(d for d in durations if d is not None))


# --- the read-only role ----------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_documented_read_only_role_reads_and_cannot_write(store: Store, db_url: str) -> None:
    import uuid

    study = add_study(store, "demo")
    store.add_trials(study, [NewTrial({"x": 0.5}, 1)])
    section = sections(doc_text())["## A read-only role for analysts (PostgreSQL)"]
    statements = [s.strip() for s in SQL_BLOCK.findall(section)[0].split(";") if s.strip()]
    role = f"analyst_{uuid.uuid4().hex[:8]}"
    database = sa.engine.make_url(db_url).database
    admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    owner = sa.engine.make_url(db_url).username
    analyst = sa.create_engine(sa.engine.make_url(db_url).set(username=role, password="change-me"))
    try:
        with admin.connect() as connection:
            for statement in statements:
                statement = re.sub(r"\banalyst\b", role, statement)
                statement = statement.replace("DATABASE hpsearch", f'DATABASE "{database}"')
                connection.execute(sa.text(statement.replace("FOR ROLE hpsearch", f'FOR ROLE "{owner}"')))
        with analyst.connect() as connection:
            assert connection.execute(sa.text("SHOW default_transaction_read_only")).scalar() == "on"
            for relation in ("studies", "trials", "trial_summary", "study_progress", "worker_utilization"):
                connection.execute(sa.text(f"SELECT * FROM {relation}")).all()
            assert connection.execute(sa.text("SELECT state FROM trial_summary")).scalars().all() == ["QUEUED"]
            connection.rollback()
            with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
                connection.execute(sa.text("UPDATE trials SET state = 'FAILED'"))
            connection.rollback()
            # Turning read-only off does not help: the role has no write privilege.
            connection.execute(sa.text("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"))
            connection.commit()
            for write in ("UPDATE trials SET state = 'FAILED'", "DELETE FROM trial_metrics", "CREATE TABLE x (y int)"):
                with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
                    connection.execute(sa.text(write))
                connection.rollback()
        # A table a later migration creates is readable too (default privileges).
        with admin.connect() as connection:
            connection.execute(sa.text("CREATE TABLE later_table (x int)"))
        with analyst.connect() as connection:
            assert connection.execute(sa.text("SELECT COUNT(*) FROM later_table")).scalar() == 0
        with store.session() as session:
            assert [t.state for t in session.scalars(sa.select(Trial))] == ["QUEUED"]
    finally:
        analyst.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP OWNED BY "{role}"'))
            connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
