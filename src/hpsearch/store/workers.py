"""Workers: register one, mark it alive, idle, busy or stopped, and count the live ones.

Example::

    worker_id = store.register_worker("node-1-4242", "node-1", 4242, gpu="0", backend="jax", backend_version="0.8.1")
    store.worker_alive(worker_id, "IDLE")
    store.worker_stopped(worker_id)
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from hpsearch.store.database import Database, retrying
from hpsearch.store.models import Worker
from hpsearch.store.statements import NOW, WORKER_STATE, db_now, seconds_from_now


class Workers(Database):
    """The ``workers`` table (see :mod:`hpsearch.store.workers`)."""

    @retrying
    def unstopped_workers(self, host: str) -> list[tuple[int, int, list[int]]]:
        """The workers of ``host`` not STOPPED, as ``(worker id, pid, ids of the trials it holds RUNNING)``:
        what a new run checks for workers a killed one left behind (see control.recovery)."""
        from hpsearch.store.models import Trial, TrialState

        query = (
            select(Worker.id, Worker.pid, Trial.id)
            .outerjoin(Trial, (Trial.worker_id == Worker.id) & (Trial.state == TrialState.RUNNING))
            .where(Worker.host == host, Worker.state != "STOPPED")
            .order_by(Worker.id)
        )
        found: dict[int, tuple[int, list[int]]] = {}
        with self.autocommit() as connection:
            for worker_id, pid, trial_id in connection.execute(query):
                trials = found.setdefault(worker_id, (pid, []))[1]
                if trial_id is not None:
                    trials.append(trial_id)
        return [(worker_id, pid, trials) for worker_id, (pid, trials) in found.items()]

    @retrying
    def register_worker(
        self,
        name: str,
        host: str,
        pid: int,
        gpu: str | None,
        backend: str | None = None,
        backend_version: str | None = None,
    ) -> int:
        """A new worker row, IDLE; returns its id. A worker without ``backend`` claims no trial of a study that
        requires one (``[run] backend``)."""
        with self.session() as session:
            now = db_now(session.connection())  # the live-worker count compares it with the database's clock
            worker = Worker(
                name=name, host=host, pid=pid, gpu=gpu, backend=backend, backend_version=backend_version,
                started_at=now, last_heartbeat_at=now,
            )  # fmt: skip
            session.add(worker)
            session.flush()
            return worker.id

    @retrying
    def worker_alive(self, worker_id: int, state: str) -> None:
        """The worker's state (IDLE, BUSY) and that it was seen now."""
        with self.autocommit() as connection:
            connection.execute(WORKER_STATE, {"p_worker": worker_id, "p_state": state})

    @retrying
    def worker_stopped(self, worker_id: int) -> None:
        """The worker left (STOPPED, with the time)."""
        with self.session() as session:
            session.execute(update(Worker).where(Worker.id == worker_id).values(state="STOPPED", stopped_at=NOW))

    @retrying
    def live_workers(self, within_seconds: float) -> int:
        """Workers not STOPPED that were seen within ``within_seconds``."""
        since = seconds_from_now(-within_seconds)  # by the database's clock, which stamps last_heartbeat_at
        query = (
            select(func.count()).select_from(Worker).where(Worker.state != "STOPPED", Worker.last_heartbeat_at >= since)
        )
        with self.session() as session:
            return int(session.scalar(query) or 0)
