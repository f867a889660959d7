"""Which claims a worker may make by its Keras backend: a study that sets ``[run] backend`` has its trials and
its final jobs (promotions) claimed only by workers whose ``workers.backend`` is that backend.

Why in the claim statement: a worker's children all train in one backend (its fork server imported keras
once), so a study of another backend is a claim it must not make; filtering in SQL keeps the claim one
statement and lets a worker skip to the next job it may run. A worker that recorded no backend (older
versions) claims only studies that require none.

Example::

    query = final_claim_query(one_job=True, one_study=False)
    connection.scalar(query, {"p_job": job_id, "p_study": None, "p_worker": worker_id})
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnElement, bindparam, or_, select

from hpsearch.store.models import FinalJob, Study, Worker
from hpsearch.store.statements import final_job_query


def runs_on_worker_backend() -> ColumnElement[bool]:
    """True for a study row the claiming worker (bind parameter ``p_worker``) may run: it requires no backend,
    or the one the worker recorded. Used inside a query over ``studies``."""
    required = Study.spec[("run", "backend")].as_string()
    mine = select(Worker.backend).where(Worker.id == bindparam("p_worker")).scalar_subquery()
    return or_(required.is_(None), required == mine)


@functools.cache
def final_claim_query(one_job: bool, one_study: bool) -> Any:
    """The oldest QUEUED final job (``p_job``, of study ``p_study``) that worker ``p_worker`` may run, locked,
    skipping those others hold. The study's condition is a subquery, so ``FOR UPDATE`` locks only the job's
    row (a join would lock the study's row too, and serialize every claim of a study)."""
    allowed = select(Study.id).where(Study.id == FinalJob.study_id, runs_on_worker_backend()).exists()
    return final_job_query(one_job, one_study).where(allowed)
