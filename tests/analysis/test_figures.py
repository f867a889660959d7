"""The figures are plain dicts written without plotly's graph objects (their validation was the slow part of a
large study's page): each must be exactly what plotly's validation makes of it, so plotly.js draws what the
graph objects drew. Checked on the Hyperband study of test_report (rungs, promotions, a conditional parameter,
payload strings) and on a two-objective variant of it for the Pareto front."""

from __future__ import annotations

import json
from dataclasses import replace

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from hpsearch.analysis.dashboard.figures import metrics_figure, pareto_figure
from hpsearch.analysis.report import figures
from hpsearch.analysis.report.data import load_report_data
from hpsearch.analysis.report.page import section_parts
from hpsearch.analysis.report.plotting import Figure, figure_json
from hpsearch.store import Store, StudyRecord

from .test_report import PAYLOAD, add_final_job, hb_report  # noqa: F401 (hb_report is a fixture)


def _as_plotly_validates_it(figure: Figure) -> None:
    validated = json.loads(pio.to_json(go.Figure(figure)))  # raises on a property plotly does not know
    assert json.loads(figure_json(figure)) == validated


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_figure_is_what_plotly_validation_makes_of_it(hb_report: tuple[Store, StudyRecord]) -> None:  # noqa: F811
    store, study = hb_report
    job = add_final_job(store, study)
    data = load_report_data(store, study.name)
    parts = section_parts(data, ({a.name: 1.0 / (i + 1) for i, a in enumerate(data.axes)}, ""))
    drawn = {key: part.figure for key, part in parts.items() if part.figure is not None}
    assert set(drawn) == {"history", "parallel", "importance", "curves", "slices", "timeline"}
    for figure in drawn.values():
        _as_plotly_validates_it(figure)
    assert job.confusion_matrix is not None
    _as_plotly_validates_it(figures.confusion_figure(job.confusion_matrix))
    _as_plotly_validates_it(figures.slices_figure(data, None))  # no importance: declaration order
    assert "dash" in json.dumps(drawn["curves"])  # promotions drawn as dashed links
    two = [{"name": "val_accuracy", "direction": "max"}, {"name": PAYLOAD, "direction": "min"}]
    pareto = pareto_figure(
        replace(
            data,
            study=replace(data.study, objectives=two),
            trials=[replace(t, objective_values=[t.objective, 1 - (t.objective or 0)]) for t in data.trials],
        )
    )
    assert not isinstance(pareto, str)
    _as_plotly_validates_it(pareto)
    metrics = metrics_figure({"loss": [[1, 0.5], [2, 0.4]], PAYLOAD: [[1, 0.7]]})
    assert not isinstance(metrics, str)
    _as_plotly_validates_it(metrics)


def test_figure_json_leaves_nothing_that_closes_a_script() -> None:
    text = figure_json({"data": [{"type": "scatter", "name": PAYLOAD}], "layout": {}})
    assert "<" not in text and ">" not in text and "/" not in text
    assert json.loads(text)["data"][0]["name"] == PAYLOAD
