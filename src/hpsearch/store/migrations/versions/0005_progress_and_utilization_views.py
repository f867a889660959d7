"""study_progress and worker_utilization views

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STUDY_PROGRESS = """
CREATE VIEW study_progress AS
SELECT s.name AS study,
       s.state AS state,
       s.algorithm AS algorithm,
       s.objective_name AS objective_name,
       s.direction AS direction,
       s.max_trials AS max_trials,
       COUNT(t.id) AS trials,
       SUM(CASE WHEN t.state = 'QUEUED' THEN 1 ELSE 0 END) AS queued,
       SUM(CASE WHEN t.state = 'RUNNING' THEN 1 ELSE 0 END) AS running,
       SUM(CASE WHEN t.state = 'COMPLETED' THEN 1 ELSE 0 END) AS completed,
       SUM(CASE WHEN t.state = 'PRUNED' THEN 1 ELSE 0 END) AS pruned,
       SUM(CASE WHEN t.state = 'FAILED' THEN 1 ELSE 0 END) AS failed,
       CASE WHEN s.direction = 'max'
            THEN MAX(CASE WHEN t.state = 'COMPLETED' THEN t.objective END)
            ELSE MIN(CASE WHEN t.state = 'COMPLETED' THEN t.objective END) END AS best_objective,
       COALESCE(SUM(CASE WHEN t.epochs_done > t.initial_epoch THEN t.epochs_done - t.initial_epoch ELSE 0 END), 0)
           AS epochs_trained,
       MIN(t.started_at) AS first_started_at,
       MAX(t.finished_at) AS last_finished_at
FROM studies s
LEFT JOIN trials t ON t.study_id = s.id
GROUP BY s.id, s.name, s.state, s.algorithm, s.objective_name, s.direction, s.max_trials
"""


def _seconds(start: str, end: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def worker_utilization(dialect: str) -> str:
    last_seen = "COALESCE(w.stopped_at, w.last_heartbeat_at)"
    alive = _seconds("w.started_at", last_seen, dialect)
    busy = f"COALESCE(SUM({_seconds('a.started_at', f'COALESCE(a.ended_at, {last_seen})', dialect)}), 0)"
    return f"""
CREATE VIEW worker_utilization AS
SELECT w.name AS worker,
       w.host AS host,
       w.gpu AS gpu,
       w.state AS state,
       w.started_at AS started_at,
       {last_seen} AS last_seen_at,
       COUNT(a.id) AS attempts,
       {alive} AS alive_seconds,
       {busy} AS busy_seconds,
       {alive} - {busy} AS idle_seconds
FROM workers w
LEFT JOIN trial_attempts a ON a.worker_id = w.id
GROUP BY w.id, w.name, w.host, w.gpu, w.state, w.started_at, w.stopped_at, w.last_heartbeat_at
"""


def upgrade() -> None:
    op.execute(STUDY_PROGRESS)
    op.execute(worker_utilization(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS worker_utilization")
    op.execute("DROP VIEW IF EXISTS study_progress")
