"""Creating a study: validate the file, import and build the hypermodel, load and check the data, discover
the space, and only then insert one row, so that a bad input leaves the database as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpsearch.errors import SpecError
from hpsearch.loading import check_fits, check_model, hypermodel_label, load_dataset, study_hypermodel
from hpsearch.paths import ensure_writable_root
from hpsearch.space import SearchSpace, discover_space, override_config
from hpsearch.spec import StudySpec, load_spec
from hpsearch.store import Store
from hpsearch.store.models import Study
from hpsearch.strategies import StudyContext, planned_trials

DEFAULT_ARTIFACT_ROOT = "hpsearch-artifacts"


def study_row(spec: StudySpec, path: Path, artifact_root: str | Path) -> Study:
    """Check the hypermodel and the data loader, discover the space, and return the unsaved study row."""
    base_dir = path.resolve().parent
    dataset = load_dataset(spec.study.data, base_dir)
    hypermodel = study_hypermodel(spec, base_dir, dataset)

    def check(model: object, where: str) -> None:
        check_model(model, where)
        if spec.automl is None:  # AutoML models adapt their inputs to this data by construction
            check_fits(model, dataset, spec.study.data)

    space = discover_space(hypermodel, hypermodel_label(spec), check=check)
    if spec.space:
        space = override_config(space, spec.space, str(path))
    artifact_root = ensure_writable_root(artifact_root)
    _check_initial_trials(spec.search.initial_trials, SearchSpace(space), str(path))
    if spec.automl is not None and spec.automl.task is not None and spec.automl.seed_initial_trials:
        from hpsearch.automl import fit_initial_trials, initial_hps

        seeds = fit_initial_trials(initial_hps(spec.automl.task), SearchSpace(space))
        search = spec.search.model_copy(update={"initial_trials": [*spec.search.initial_trials, *seeds]})
        spec = spec.model_copy(update={"search": search})
    search = spec.search.model_dump(mode="json")
    primary = spec.study.objectives[0]
    context = StudyContext(SearchSpace(space), primary.direction, spec.study.seed, None, spec.search.max_epochs)
    return Study(
        name=spec.study.name,
        objective_name=primary.name,
        direction=primary.direction,
        objectives=[o.model_dump() for o in spec.study.objectives],
        algorithm=spec.search.algorithm,
        max_trials=planned_trials(search, context),
        max_epochs=spec.search.max_epochs,
        seed=spec.study.seed,
        spec=spec.model_dump(mode="json"),
        space=space,
        source_path=str(path.resolve()),
        base_dir=str(base_dir),
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


def create_study(
    store: Store, path: str | Path, artifact_root: str | Path = DEFAULT_ARTIFACT_ROOT
) -> tuple[Study, bool]:
    """Create the study of a study file, or return the existing one of the same name and spec."""
    path = Path(path)
    spec = load_spec(path)
    return store.create_study(study_row(spec, path, artifact_root), normalize=_current_form)


def _current_form(stored: dict[str, Any]) -> dict[str, Any]:
    """A spec stored by an earlier version, with the fields added since at their defaults."""
    try:
        return StudySpec.model_validate(stored).model_dump(mode="json")
    except ValueError:  # not a valid spec any more: it differs
        return stored


def study_context(study: Study) -> StudyContext:
    return StudyContext(
        space=SearchSpace(study.space),
        direction=study.direction,
        seed=study.seed,
        max_trials=study.max_trials,
        max_epochs=study.max_epochs,
        options=dict(study.spec.get("search", {})),
        directions=tuple(o["direction"] for o in study.objectives or []),
    )
