"""What the dashboard's JSON API answers, read from the store (reads only) into plain JSON-ready dicts.

Times are UTC ISO 8601 strings without an offset, as stored; numbers that are not finite become null.

Example::

    >>> studies = list_studies(store)
    >>> studies[0]["name"], studies[0]["completed"]
    ('mnist_mlp', 12)
    >>> trial_page(store, "mnist_mlp", TrialQuery(states=("COMPLETED",), sort="objective", descending=True))["total"]
    12
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from hpsearch.errors import UsageError
from hpsearch.store import Store, TrialRecord, TrialState
from hpsearch.store.models import utcnow
from hpsearch.store.overview import TRIAL_SORTS

# A worker whose last heartbeat is older than this counts as not alive (workers beat every few seconds).
ALIVE_SECONDS = 120.0
MAX_LIMIT = 1000


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings and non-finite floats as None, recursively.

    Example: ``jsonable({"t": datetime(2026, 1, 2), "x": float("nan")})`` is
    ``{"t": "2026-01-02T00:00:00", "x": None}``.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _record(record: Any, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: jsonable(getattr(record, f.name)) for f in fields(record) if f.name not in leave_out}


def list_studies(store: Store) -> list[dict[str, Any]]:
    """Every study's progress (``study_progress``), with its running trials' live workers and elapsed time.

    Example: ``list_studies(store)[0]["workers_alive"]`` is ``2`` while two workers run its trials."""
    now = utcnow()
    alive = {
        w.id
        for w in store.worker_usage()
        if w.state != "STOPPED" and (now - w.last_heartbeat_at).total_seconds() <= ALIVE_SECONDS
    }
    running: dict[str, set[int]] = {}
    for trial in store.running_trials():
        if trial.worker_id in alive:
            running.setdefault(trial.study, set()).add(trial.worker_id)
    result = []
    for study in store.study_overview():
        row = _record(study)
        end = study.last_finished_at if study.state != "RUNNING" else now
        started = study.first_started_at
        row["elapsed_seconds"] = (end - started).total_seconds() if started and end else None
        row["finished"] = study.completed + study.pruned + study.failed
        row["workers_alive"] = len(running.get(study.name, ()))
        result.append(row)
    return result


def study_detail(store: Store, name: str) -> dict[str, Any]:
    """One study: its row (spec and space included), counts by state and its best trial.

    Example: ``study_detail(store, "mnist_mlp")["best"]["number"]``."""
    study = store.study(name)
    counts = store.counts(study.id)
    best = store.best_trial(study)
    row = _record(study)
    row["counts"] = {state.value: counts.get(state.value, 0) for state in TrialState}
    row["best"] = _record(best) if best is not None else None
    row["version"] = store.study_fingerprint(study.id)
    return row


@dataclass(frozen=True)
class TrialQuery:
    """A page of trials: ``states`` (empty: all), ``sort`` (a key of TRIAL_SORTS), ``descending``, ``offset``,
    ``limit`` (1..1000). Example: ``TrialQuery.parse({"state": "COMPLETED", "sort": "objective"})``."""

    states: tuple[str, ...] = ()
    sort: str = "number"
    descending: bool = False
    offset: int = 0
    limit: int = 50

    @classmethod
    def parse(cls, query: dict[str, str]) -> TrialQuery:
        """From query parameters ``state`` (comma-separated), ``sort``, ``order`` (asc, desc), ``offset``,
        ``limit``; a UsageError names the bad one."""
        states = tuple(s.strip().upper() for s in query.get("state", "").split(",") if s.strip())
        known = [s.value for s in TrialState]
        for state in states:
            if state not in known:
                raise UsageError("state", f"unknown trial state {state!r} (one of {', '.join(known)})")
        sort = query.get("sort", "number")
        if sort not in TRIAL_SORTS:
            raise UsageError("sort", f"unknown sort key {sort!r} (one of {', '.join(TRIAL_SORTS)})")
        order = query.get("order", "asc")
        if order not in ("asc", "desc"):
            raise UsageError("order", f"{order!r} is not asc or desc")
        offset = _integer(query, "offset", 0, 0, 2**31 - 1)
        limit = _integer(query, "limit", 50, 1, MAX_LIMIT)
        return cls(states, sort, order == "desc", offset, limit)


def _integer(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(name, f"{text!r} is not an integer") from None
    if not low <= value <= high:
        raise UsageError(name, f"{value} is outside {low}..{high}")
    return value


def trial_row(trial: TrialRecord, worker: str | None) -> dict[str, Any]:
    """A trial as the trials table lists it. Example: ``trial_row(t, "node-1")["worker"]``."""
    row = _record(trial, leave_out=("lease_expires_at", "stop_requested", "seed", "study_id"))
    row["worker"] = worker
    return row


def trial_page(store: Store, name: str, query: TrialQuery) -> dict[str, Any]:
    """One page of a study's trials, filtered and sorted, with the total that match.

    Example: ``trial_page(store, "mnist_mlp", TrialQuery(limit=20))["trials"][0]["number"]`` is ``0``."""
    study = store.study(name)
    total, trials, workers = store.trial_page(
        study.id,
        states=query.states,
        sort=query.sort,
        descending=query.descending,
        offset=query.offset,
        limit=query.limit,
    )
    return {
        "study": study.name,
        "objective_name": study.objective_name,
        "total": total,
        **asdict(query),
        "trials": [trial_row(t, workers.get(t.worker_id) if t.worker_id is not None else None) for t in trials],
    }


def trial_detail(store: Store, name: str, number: int) -> dict[str, Any]:
    """One trial: its row, attempts (with the error that ended each), every metric per epoch, its files.

    Example: ``trial_detail(store, "mnist_mlp", 3)["metrics"]["val_accuracy"]`` is ``[[1, 0.81], [2, 0.86]]``."""
    study = store.study(name)
    trial = store.trial(study.id, number)
    metrics: dict[str, list[list[Any]]] = {}
    for epoch, values in sorted(store.metrics(trial.id).items()):
        for metric, value in values.items():
            metrics.setdefault(metric, []).append([epoch, jsonable(value)])
    parent = store.trial_by_id(trial.parent_trial_id).number if trial.parent_trial_id is not None else None
    return {
        "study": study.name,
        "objective_name": study.objective_name,
        "trial": _record(trial),
        "parent_number": parent,
        "attempts": [_record(a) for a in store.attempts(trial.id)],
        "metrics": metrics,
        "artifacts": [_record(a) for a in store.trial_artifacts(trial.id)],
    }


def list_workers(store: Store) -> list[dict[str, Any]]:
    """Every worker, newest first: host, GPU, state, last heartbeat, busy share and its current trial.

    Example: ``list_workers(store)[0]["current"]`` is ``{"study": "mnist_mlp", "number": 7, ...}`` or None."""
    now = utcnow()
    current = {t.worker_id: t for t in store.running_trials() if t.worker_id is not None}
    result = []
    for worker in store.worker_usage():
        row = _record(worker)
        row["heartbeat_age_seconds"] = (now - worker.last_heartbeat_at).total_seconds()
        row["alive"] = worker.state != "STOPPED" and row["heartbeat_age_seconds"] <= ALIVE_SECONDS
        row["busy_share"] = worker.busy_seconds / worker.alive_seconds if worker.alive_seconds > 0 else None
        trial = current.get(worker.id)
        row["current"] = _record(trial, leave_out=("worker_id",)) if trial is not None else None
        result.append(jsonable(row))
    return result


def final_models(store: Store, name: str) -> dict[str, Any]:
    """A study's final jobs, newest first, each with its test metrics, confusion matrix, per-class and
    per-slice metrics and exported files (with their sha256).

    Example: ``final_models(store, "mnist_mlp")["jobs"][0]["exports"][0]["sha256"]``."""
    study = store.study(name)
    jobs = []
    for job in reversed(store.final_jobs(study.id)):
        classes, slices = store.final_evaluation(job.id)
        row = _record(job)
        row["trial_number"] = store.trial_by_id(job.trial_id).number
        row["classes"] = [_record(c, leave_out=("id", "final_job_id")) for c in classes]
        row["slices"] = [_record(s, leave_out=("id", "final_job_id")) for s in slices]
        row["exports"] = [_record(a, leave_out=("study_id", "trial_id")) for a in store.final_artifacts(job.id)]
        jobs.append(row)
    return {"study": study.name, "objective_name": study.objective_name, "jobs": jobs}
