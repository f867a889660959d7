"""Study rows: build one from a spec and its discovered space, insert it (or find the same study), and the
planning context of a stored study. Never imports keras: the user's code is inspected by
:mod:`hpsearch.execution.discovery` first, so a bad input leaves the database as it was."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hpsearch.errors import SpecError
from hpsearch.paths import claim_study_root, ensure_writable_root, release_study_root
from hpsearch.space import SearchSpace
from hpsearch.spec import StudySpec
from hpsearch.store import Store
from hpsearch.store.records import NewStudy, StudyRecord
from hpsearch.strategies import StudyContext, check_user_code, planned_trials
from hpsearch.strategies.auto import AUTO, choose, effective_search

DEFAULT_ARTIFACT_ROOT = "hpsearch-artifacts"


def study_row(spec: StudySpec, path: Path, space: dict[str, Any], artifact_root: str | Path) -> NewStudy:
    """The unsaved study row of a study file whose hypermodel declared ``space`` (see
    :func:`hpsearch.execution.discovery.discover`); checks the initial trials against it."""
    artifact_root = ensure_writable_root(artifact_root)
    _check_initial_trials(spec.search.initial_trials, SearchSpace(space), str(path))
    search = spec.search.model_dump(mode="json")
    primary = spec.study.objectives[0]
    context = StudyContext(SearchSpace(space), primary.direction, spec.study.seed, None, spec.search.max_epochs)
    # auto is resolved here, once: the row records the pick and why; coordinators build the recorded pick.
    choice = None
    if spec.search.algorithm == AUTO:
        workers = spec.search.workers or spec.run.workers
        try:
            choice = choose(search, SearchSpace(space), workers, objectives=len(spec.study.objectives))
        except ValueError as exc:
            raise SpecError(f"{path}: search.algorithm", str(exc)) from None
    effective = effective_search(search, choice.record() if choice else None)
    # A user sampler / scheduler is resolved here too (the coordinator resolves it again): a bad one fails now.
    check_user_code(effective, path.resolve().parent, str(path), context)
    try:
        planned = choice.max_trials if choice and choice.max_trials else planned_trials(effective, context)
    except ValueError as exc:  # a grid too large to plan (or one that never ends)
        raise SpecError(f"{path}: search", str(exc)) from None
    return NewStudy(
        name=spec.study.name,
        objective_name=primary.name,
        direction=primary.direction,
        objectives=[o.model_dump() for o in spec.study.objectives],
        algorithm=f"{AUTO}: {choice.label}" if choice else spec.search.algorithm,
        algorithm_choice=choice.record() if choice else None,
        max_trials=planned,
        max_epochs=spec.search.max_epochs,
        seed=spec.study.seed,
        spec=spec.model_dump(mode="json"),
        space=space,
        source_path=str(path.resolve()),
        base_dir=str(path.resolve().parent),
        artifact_root=str(artifact_root),
    )


def _check_initial_trials(trials: list[dict[str, Any]], space: SearchSpace, source: str) -> None:
    params = {p.name: p for p in space.params}
    for index, trial in enumerate(trials):
        for name, value in trial.items():
            param = params.get(name)
            if param is None:
                raise SpecError(f"{source}: search.initial_trials.{index}.{name}", "the space has no such parameter")
            if not param.allows(value):
                raise SpecError(
                    f"{source}: search.initial_trials.{index}.{name}", f"outside the parameter's domain (got {value!r})"
                )


def insert_study(store: Store, row: NewStudy) -> tuple[StudyRecord, bool]:
    """Insert a study row, or return the existing study of the same name and spec.

    A new study's row records a directory of its own under ``row.artifact_root`` (see
    :func:`hpsearch.paths.claim_study_root`), claimed just before the insert and removed again when the insert
    does not happen (the study existed, or the insert failed), so nothing is left half-made."""
    own_root = claim_study_root(row.artifact_root, row.name)
    created = False
    try:
        record, created = store.create_study(
            dataclasses.replace(row, artifact_root=str(own_root)), normalize=_current_form
        )
    finally:
        if not created:
            release_study_root(own_root)
    return record, created


def _current_form(stored: dict[str, Any]) -> dict[str, Any]:
    """A spec stored by an earlier version, with the fields added since at their defaults."""
    try:
        return StudySpec.model_validate(stored).model_dump(mode="json")
    except ValueError:  # not a valid spec any more: it differs
        return stored


def study_search(study: StudyRecord) -> dict[str, Any]:
    """The ``[search]`` table a coordinator builds the study's strategy from: the stored one, with the pick of
    ``algorithm = "auto"`` recorded at creation set in (see :mod:`hpsearch.strategies.auto`)."""
    return effective_search(study.spec["search"], study.algorithm_choice)


def study_context(study: StudyRecord) -> StudyContext:
    return StudyContext(
        space=SearchSpace(study.space),
        direction=study.direction,
        seed=study.seed,
        max_trials=study.max_trials,
        max_epochs=study.max_epochs,
        options=effective_search(study.spec.get("search", {}), study.algorithm_choice),
        directions=tuple(o["direction"] for o in study.objectives or []),
    )
