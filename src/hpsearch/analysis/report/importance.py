"""Parameter importance for the report: fANOVA (through Optuna) over the completed trials.

Example::

    >>> importances, note = parameter_importances(load_report_data(store, "mnist_mlp"))
    >>> sorted(importances, key=importances.get, reverse=True)[:2]
    ['lr', 'units']
"""

from __future__ import annotations

from hpsearch.analysis.report.data import ReportData, TrialInfo


def _importance_rows(data: ReportData) -> list[TrialInfo]:
    """Completed trials, each configuration once: a promoted configuration (Hyperband, ASHA) counts with its
    largest budget."""
    deepest: dict[str, TrialInfo] = {}
    for trial in data.completed:
        key = repr(sorted(trial.params.items(), key=lambda item: item[0]))
        kept = deepest.get(key)
        if kept is None or (trial.budget_epochs, trial.number) > (kept.budget_epochs, kept.number):
            deepest[key] = trial
    return sorted(deepest.values(), key=lambda t: t.number)


def parameter_importances(data: ReportData) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances of the parameters set in every completed trial, and a note on what was left out
    (or why there are none). The note is plain text (parameter names and an error's first line in it are the
    user's): the page escapes it.

    Example: ``parameter_importances(data)`` -> ``({"lr": 0.7, "act": 0.3}, "")``.
    """
    import optuna

    from hpsearch.strategies.samplers import distribution

    rows = _importance_rows(data)
    if len(rows) < 2:
        return None, "Parameter importance needs at least two completed trials."
    params = {p.name: p for p in data.space.params if p.kind != "fixed"}
    varying = {a.name for a in data.axes}
    names = [n for n in params if n in varying and all(n in t.params for t in rows)]
    partial = [n for n in params if n in varying and n not in names]
    if not names:
        return None, "No parameter is set in every completed trial, so their importance cannot be compared."
    distributions = {name: distribution(params[name]) for name in names}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if data.maximize else "minimize")
    skipped = 0
    for trial in rows:
        try:
            study.add_trial(
                optuna.trial.create_trial(
                    params={n: trial.params[n] for n in names}, distributions=distributions, value=trial.objective
                )
            )
        except ValueError:  # a value outside the (since narrowed) space
            skipped += 1
    notes = []
    if partial:
        notes.append("Left out (inactive in some trials): " + ", ".join(partial) + ".")
    if skipped:
        notes.append(f"{skipped} trial(s) with values outside the search space were left out.")
    if data.multi_fidelity:
        notes.append("Each configuration counts once, with the result of its largest budget.")
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=names)
    except Exception as exc:  # too few or too uniform trials: say so instead of failing the report
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, " ".join([f"Parameter importance could not be computed: {first_line}", *notes])
    return dict(importances), " ".join(notes)
