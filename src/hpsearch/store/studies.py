"""Studies: create one (or find the same), read them, change a study's state and space, delete one.

Example::

    study, created = store.create_study(NewStudy(name="mnist", ...))
    store.set_study_state(study.id, StudyState.STOPPED, "stopped by hand")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, select, update

from hpsearch.errors import UsageError
from hpsearch.store.database import Database, retrying
from hpsearch.store.locks import serialize
from hpsearch.store.models import FINISHED_STATES, Study, StudyState, Trial, TrialState
from hpsearch.store.records import NewStudy, StudyRecord, from_row, new_values
from hpsearch.store.statements import STUDY_STATE, db_now

# Budgets `hpsearch study extend` raises: a study file still naming the smaller one is the same study.
_EXTENDABLE = ("search.max_trials", "search.max_wall_time")


def spec_differences(stored: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted paths where two specs differ; a budget ``study extend`` raised above the file's is no
    difference.

    >>> spec_differences({"search": {"max_trials": 20, "seed": 1}}, {"search": {"max_trials": 10, "seed": 2}})
    ['search.seed']
    """
    if isinstance(stored, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(stored) | set(new), key=str):
            found += spec_differences(stored.get(key), new.get(key), f"{prefix}{key}.")
        return found
    path = prefix.rstrip(".")
    if stored == new:
        return []
    if path in _EXTENDABLE and isinstance(stored, int | float) and (new is None or new <= stored):
        return []
    return [path]


class Studies(Database):
    """The ``studies`` table (see :mod:`hpsearch.store.studies`)."""

    @retrying
    def create_study(
        self, study: NewStudy, normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> tuple[StudyRecord, bool]:
        """Insert ``study``; a study of the same name and spec is returned as is (``created`` False).
        ``normalize`` turns a stored spec into today's form (fields added since it was stored take their
        defaults) before the comparison. Example: ``store.create_study(new)[1]`` is True the first time.

        Two callers creating one name at once both succeed: the second waits for the first's commit (see
        :mod:`hpsearch.store.locks`) and then finds its study."""
        with self.session() as session:
            serialize(session.connection(), "study", study.name)
            existing = session.scalar(select(Study).where(Study.name == study.name))
            if existing is not None:
                stored = normalize(existing.spec) if normalize is not None else existing.spec
                differ = spec_differences(stored, study.spec)
                if differ:
                    shown = ", ".join(differ[:5]) + (f" (and {len(differ) - 5} more)" if len(differ) > 5 else "")
                    raise UsageError(
                        f"study {study.name}",
                        f"exists with a different study file (differs in {shown}); rename the study, delete the "
                        "old one (`hpsearch study delete`), or grow its budget with `hpsearch study extend`",
                    )
                return from_row(StudyRecord, existing), False
            # created_at on the database's clock: max_wall_time is judged by coordinators on other machines.
            row = Study(**new_values(study, NewStudy), created_at=db_now(session.connection()))
            session.add(row)
            session.flush()
            return from_row(StudyRecord, row), True

    @retrying
    def study(self, name: str) -> StudyRecord:
        """The study named ``name``; a UsageError names it when there is none."""
        with self.session() as session:
            study = session.scalar(select(Study).where(Study.name == name))
            if study is None:
                raise UsageError(f"study {name}", "no such study (see `hpsearch status`)")
            return from_row(StudyRecord, study)

    @retrying
    def studies(self, states: Sequence[str] | None = None) -> list[StudyRecord]:
        """All studies (or those in ``states``) in id order. Example: ``store.studies(["RUNNING"])``."""
        query = select(Study.__table__).order_by(Study.id)
        if states is not None:
            query = query.where(Study.state.in_(list(states)))
        with self.autocommit() as connection:
            return [from_row(StudyRecord, row) for row in connection.execute(query)]

    @retrying
    def study_by_id(self, study_id: int) -> StudyRecord:
        """The study with this id (it must exist)."""
        with self.session() as session:
            return from_row(StudyRecord, session.get_one(Study, study_id))

    @retrying
    def study_state(self, study_id: int) -> str:
        """A study's state alone (what an idle worker polls)."""
        with self.autocommit() as connection:
            state: str = connection.scalars(STUDY_STATE, {"p_study": study_id}).one()
            return state

    @retrying
    def set_study_state(self, study_id: int, state: StudyState, message: str | None = None) -> None:
        """Set a study's state and message. Example: ``store.set_study_state(1, StudyState.STOPPED)``."""
        with self.session() as session:
            session.execute(update(Study).where(Study.id == study_id).values(state=state, message=message))

    @retrying
    def resume_study(self, study_id: int, message: str | None = None) -> int:
        """Set a study RUNNING. A FAILED one also has its consecutive-failure streak reset: trials finished
        so far no longer count towards ``max_consecutive_failures`` (its cause, a full or read-only artifact
        root, say, may be fixed). Returns how many failures in a row that forgave (0 unless it was FAILED).
        Example: ``store.resume_study(store.study("mnist").id)`` -> ``3``."""
        with self.session() as session:
            study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
            assert study is not None
            forgiven = 0
            if study.state == StudyState.FAILED:
                finished = (
                    select(Trial.state, Trial.finished_at)
                    .where(Trial.study_id == study_id, Trial.state.in_(list(FINISHED_STATES)))
                    .order_by(Trial.finished_at.desc(), Trial.id.desc())
                )
                if study.failures_reset_at is not None:
                    finished = finished.where(Trial.finished_at > study.failures_reset_at)
                latest = session.execute(finished).all()
                for state, _ in latest:
                    if state != TrialState.FAILED:
                        break
                    forgiven += 1
                if latest:
                    # The trials' own latest timestamp, not this machine's clock: see Study.failures_reset_at.
                    study.failures_reset_at = latest[0].finished_at
            study.state, study.message = StudyState.RUNNING, message
            return forgiven

    @retrying
    def extend_study(
        self, study_id: int, *, max_trials: int | None = None, max_wall_time: float | None = None
    ) -> StudyRecord:
        """Raise a study's budget to new totals (a UsageError unless each grows). A COMPLETED study becomes
        STOPPED: `hpsearch run` (or `study resume`) continues it. Example: ``store.extend_study(1, max_trials=20)``."""
        with self.session() as session:
            study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
            assert study is not None
            search = dict(study.spec["search"])
            for field, value, now in (
                ("max_trials", max_trials, study.max_trials),
                ("max_wall_time", max_wall_time, search.get("max_wall_time")),
            ):
                if value is None:
                    continue
                if now is not None and value <= now:
                    raise UsageError(f"study {study.name}: search.{field}", f"is {now:g}; extend it beyond that")
                search[field] = value
            if max_trials is not None:
                study.max_trials = max_trials
            study.spec = {**study.spec, "search": search}
            if study.state == StudyState.COMPLETED:
                study.state, study.message = StudyState.STOPPED, "extended; `hpsearch run` continues it"
            session.flush()
            return from_row(StudyRecord, study)

    def delete_study(self, study_id: int) -> None:
        """Delete a study and everything recorded of it (trials, metrics, attempts, artifacts, final jobs: the
        foreign keys cascade). Files under the artifact root are the caller's. Example:
        ``store.delete_study(store.study("mnist").id)``."""
        with self.session() as session:
            session.execute(delete(Study).where(Study.id == study_id))

    def rename_study(
        self, study_id: int, new_name: str, old_dir: str | None = None, new_dir: str | None = None
    ) -> None:
        """Rename a study that has no running trial or final job; a name in use is refused. Artifact URIs under
        ``old_dir`` are rewritten to lie under ``new_dir`` (the caller moves the directory), so checkpoints and
        exported models stay reachable. The stored spec takes the new name too, so that the study file, edited
        to the new name, is still the same study. Example: ``store.rename_study(1, "mnist-v2")``."""
        from hpsearch.store.models import Artifact, FinalJob, Trial, TrialState

        with self.session() as session:
            study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
            assert study is not None
            if session.scalar(select(Study.id).where(Study.name == new_name)) is not None:
                raise UsageError(f"study {new_name}", "already exists; choose another name")
            # Running trials and final jobs write under the old directory and name: rename a quiet study only.
            busy = [
                what
                for what, query in (
                    ("trial", select(Trial.id).where(Trial.study_id == study_id, Trial.state == TrialState.RUNNING)),
                    (
                        "final job",
                        select(FinalJob.id).where(FinalJob.study_id == study_id, FinalJob.state == TrialState.RUNNING),
                    ),
                )
                if session.scalar(query.limit(1)) is not None
            ]
            if busy:
                raise UsageError(
                    f"study {study.name}", f"a {busy[0]} is running; `hpsearch study stop` it, wait, then rename"
                )
            spec = dict(study.spec)
            spec["study"] = {**spec.get("study", {}), "name": new_name}
            study.name, study.spec = new_name, spec
            if old_dir is not None and new_dir is not None:
                prefix = old_dir.rstrip("/") + "/"
                for artifact in session.scalars(select(Artifact).where(Artifact.study_id == study_id)):
                    if artifact.uri.startswith(prefix):
                        artifact.uri = new_dir.rstrip("/") + "/" + artifact.uri[len(prefix) :]

    @retrying
    def extend_space(self, study_id: int, entries: Sequence[dict[str, Any]]) -> None:
        """Add parameters first declared outside ``build`` (in a HyperModel's ``fit``) to the space."""
        with self.session() as session:
            study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
            assert study is not None
            known = {e["config"]["name"] for e in study.space["space"]}
            new = [e for e in entries if e["config"]["name"] not in known]
            if new:
                study.space = {**study.space, "space": [*study.space["space"], *new]}
