"""What a study file's user code declares: import the hypermodel, load and check the data, and discover the
search space by building the hypermodel with every conditional branch active.

This is the execution side of study creation (it imports keras through the user's code); the control side,
:mod:`hpsearch.control.studies`, turns what is found here into the study row without touching keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.execution.loading import check_fits, check_model, hypermodel_label, load_dataset, study_hypermodel
from hpsearch.space import SearchSpace, discover_space, override_config
from hpsearch.spec import StudySpec


@dataclass(frozen=True)
class Discovered:
    """A study file's spec (with AutoML's seed trials added) and the space its hypermodel declares."""

    spec: StudySpec
    space: dict[str, Any]
    base_dir: Path


def discover(spec: StudySpec, path: Path) -> Discovered:
    """Check the hypermodel and the data loader and discover the space of the study file at ``path``.

    >>> from hpsearch.spec import load_spec
    >>> found = discover(load_spec("studies/mnist_mlp.toml"), Path("studies/mnist_mlp.toml"))  # doctest: +SKIP
    >>> [p["name"] for p in found.space["space"]]  # doctest: +SKIP
    ['units', 'dropout', 'lr']
    """
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
    if spec.automl is not None and spec.automl.task is not None and spec.automl.seed_initial_trials:
        from hpsearch.execution.automl import fit_initial_trials, initial_hps

        seeds = fit_initial_trials(initial_hps(spec.automl.task), SearchSpace(space))
        search = spec.search.model_copy(update={"initial_trials": [*spec.search.initial_trials, *seeds]})
        spec = spec.model_copy(update={"search": search})
    return Discovered(spec, space, base_dir)
