"""A study's hypermodel: imported from the user's code (:mod:`hpsearch.execution.loading`), or built by AutoKeras
from the study's ``[automl]`` table (:mod:`hpsearch.execution.automl`); and the check that ``[fit]`` does not
set what the hypermodel's own ``fit`` sets.

Both lower modules stay independent of each other: this one sits above them (AutoML's hypermodel needs user-code
loading for a custom ``AutoModel``, and loading need not know AutoML exists).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import SpecError
from hpsearch.execution.fitting import fit_keywords
from hpsearch.execution.loading import Dataset, hypermodel_label, load_hypermodel

if TYPE_CHECKING:
    from hpsearch.spec import StudySpec

# The [fit] keys that are model.fit arguments a hypermodel's fit may set too. [fit] callbacks are merged into
# whatever callbacks the user's fit passes, so they never clash.
CLASHING_FIT_KEYS = ("batch_size", "class_weight", "shuffle")


def study_hypermodel(spec: StudySpec, base_dir: str | Path, dataset: Dataset) -> Any:
    """The study's hypermodel: its ``hypermodel`` reference, or the AutoKeras graph of its ``[automl]`` table
    (which fits its preprocessing on ``dataset``'s training split).

    >>> hypermodel = study_hypermodel(load_spec("studies/mnist_mlp.toml"), Path("studies"), dataset)  # doctest: +SKIP
    >>> model = hypermodel.build(keras_tuner.HyperParameters())  # doctest: +SKIP
    """
    if spec.automl is None:
        assert spec.study.hypermodel is not None
        return load_hypermodel(spec.study.hypermodel, base_dir)
    from hpsearch.execution.automl import automl_hypermodel

    narrowed = {name: list(p.values) for name, p in spec.space.items() if p.type == "choice"}
    return automl_hypermodel(
        spec.automl,
        base_dir,
        dataset,
        epochs=spec.search.max_epochs,
        batch_size=spec.fit.batch_size,
        narrowed=narrowed,
    )


def check_fit_section(spec: StudySpec, hypermodel: Any, source: str) -> None:
    """Refuse a ``[fit]`` key the hypermodel's ``fit`` also sets: its value would never be used. (When the
    ``fit``'s source cannot be read, the trial finds out instead: the user's value wins, with a log line.)

    >>> check_fit_section(spec, GuideHyperModel(), "study.toml")  # doctest: +SKIP
    Traceback (most recent call last):
    hpsearch.errors.SpecError: study.toml: fit.batch_size: the hypermodel's fit (model.py:Guide) sets batch_size ...
    """
    sets_itself = fit_keywords(hypermodel) or frozenset()
    for key in CLASHING_FIT_KEYS:
        if key in spec.fit.model_fields_set and key in sets_itself:
            raise SpecError(
                f"{source}: fit.{key}",
                f"the hypermodel's fit ({hypermodel_label(spec)}) sets {key} itself; remove it from [fit]",
            )
