"""Analyst exports: trials and learning curves as pandas frames (CSV, Parquet, JSON), and a copy of a
study in Optuna's storage format so optuna-dashboard can browse it. Reads the database, never writes it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from hpsearch.errors import UsageError
from hpsearch.space import SearchSpace
from hpsearch.store import Store, StudyRecord

FORMATS = ("csv", "parquet", "json")


def trials_frame(store: Store, study: StudyRecord) -> pd.DataFrame:
    """One row per trial; each parameter in a ``param_<name>`` column."""
    records = []
    for trial in store.trials(study.id):
        record: dict[str, Any] = {
            "study": study.name,
            "number": trial.number,
            "state": trial.state,
            "objective": trial.objective,
            "best_epoch": trial.best_epoch,
            "epochs_done": trial.epochs_done,
            "budget_epochs": trial.budget_epochs,
            "initial_epoch": trial.initial_epoch,
            "bracket": trial.bracket,
            "rung": trial.rung,
            "retries": trial.retries,
            "duration_seconds": trial.duration_seconds,
            "started_at": trial.started_at,
            "finished_at": trial.finished_at,
            "error": trial.error,
        }
        record.update({f"param_{name}": value for name, value in trial.params.items()})
        records.append(record)
    return pd.DataFrame.from_records(records)


def metrics_frame(store: Store, study: StudyRecord) -> pd.DataFrame:
    """Learning curves in long form: trial number, epoch, metric name, value."""
    records = [
        {"study": study.name, "number": trial.number, "epoch": epoch, "name": name, "value": value}
        for trial in store.trials(study.id)
        for epoch, values in store.metrics(trial.id).items()
        for name, value in values.items()
    ]
    return pd.DataFrame.from_records(records, columns=["study", "number", "epoch", "name", "value"])


# A spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK(...)): OWASP's CSV injection
# advice is a leading apostrophe, which the spreadsheet shows as text. Only CSV, only string cells.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _defuse(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every string cell a spreadsheet would run as a formula prefixed with ``'``.

    >>> csv_safe(pd.DataFrame({"error": ["=HYPERLINK(1)", "ok"], "x": [-1, 2]}))["error"].tolist()
    ["'=HYPERLINK(1)", 'ok']
    """
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(_defuse)
    return safe


def write_frame(frame: pd.DataFrame, fmt: str, path: Path | None) -> str | None:
    """Write to ``path``, or return the text (CSV and JSON) for standard output. CSV string cells that a
    spreadsheet would run as formulas start with ``'`` (see :func:`csv_safe`)."""
    if fmt not in FORMATS:
        raise UsageError("--format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "parquet" and path is None:
        raise UsageError("--format parquet", "needs an output file (-o FILE)")
    text = None
    if fmt != "parquet":
        text = (
            csv_safe(frame).to_csv(index=False)
            if fmt == "csv"
            else frame.to_json(orient="records", date_format="iso")
        )
        if path is None:
            return text
    assert path is not None
    try:
        if text is None:
            frame.to_parquet(path, index=False)
        else:
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {path}", f"cannot write: {exc.strerror or exc}") from None
    return None


def to_optuna(store: Store, study: StudyRecord, url: str) -> int:
    """Copy finished trials (params, objective values, per-epoch objective) into an Optuna storage."""
    import optuna

    from hpsearch.strategies.samplers import distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = study.objectives or [{"name": study.objective_name, "direction": study.direction}]
    target = optuna.create_study(
        storage=url,
        study_name=study.name,
        load_if_exists=False,
        directions=["maximize" if o["direction"] == "max" else "minimize" for o in objectives],
    )
    distributions = {p.name: distribution(p) for p in SearchSpace(study.space).params if p.kind != "fixed"}
    states = {
        "COMPLETED": optuna.trial.TrialState.COMPLETE,
        "PRUNED": optuna.trial.TrialState.PRUNED,
        "FAILED": optuna.trial.TrialState.FAIL,
    }
    copied = 0
    for trial in store.trials(study.id):
        state = states.get(trial.state)
        values = trial.objective_values if len(objectives) > 1 else [trial.objective]
        complete = values is not None and all(v is not None and math.isfinite(v) for v in values)
        if state is None or (state == optuna.trial.TrialState.COMPLETE and not complete):
            continue
        params = {k: v for k, v in trial.params.items() if k in distributions}
        curve = {
            epoch: value
            for epoch, metrics in store.metrics(trial.id).items()
            if (value := metrics.get(study.objective_name)) is not None
        }
        target.add_trial(
            optuna.trial.create_trial(
                state=state,
                params=params,
                distributions={k: distributions[k] for k in params},
                values=list(values) if state == optuna.trial.TrialState.COMPLETE else None,  # type: ignore[arg-type]
                intermediate_values=curve,
                user_attrs={"hpsearch_number": trial.number, "best_epoch": trial.best_epoch},
            )
        )
        copied += 1
    return copied
