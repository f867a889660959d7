"""The queries run per trial or per tick use an index: their cost does not grow with the trials table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hpsearch.store import Store, TrialState
from hpsearch.store.models import Trial
from hpsearch.store.statements import claim_query

from ..conftest import add_study

FINISHED = 20_000


def _fill(store: Store) -> int:
    """A study with many finished trials and a few queued ones, as after a long run; returns its id."""
    study = add_study(store)
    rows = [
        {
            "study_id": study.id,
            "number": n,
            "state": TrialState.COMPLETED if n < FINISHED else TrialState.QUEUED,
            "params": {"x": n},
            "budget_epochs": 3,
            "seed": n,
        }
        for n in range(FINISHED + 20)
    ]
    with store.session() as session:
        session.execute(sa.insert(Trial), rows)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")
    return study.id


def _plan(store: Store, query: sa.Select) -> str:  # type: ignore[type-arg]
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + sql).all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("for_one_study", [False, True])
def test_the_claim_query_uses_an_index_not_a_scan_of_trials(store: Store, for_one_study: bool) -> None:
    study_id = _fill(store)
    plan = _plan(store, claim_query(for_one_study).params(p_study=study_id))
    if store.engine.dialect.name == "sqlite":
        assert "SCAN trials" not in plan, plan
    else:
        assert "Seq Scan on trials" not in plan, plan
        assert "trials_pkey" not in plan, plan  # walking ids past every finished trial is a scan too
    assert "ix_trials_claim" in plan or "ix_trials_state_id" in plan, plan
    # The claim still takes the oldest queued trial.
    worker = store.register_worker("w", "h", 1, None)
    claimed = store.claim(worker, study_id if for_one_study else None)
    assert claimed is not None and claimed.number == FINISHED
