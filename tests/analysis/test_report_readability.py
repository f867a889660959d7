"""The report is readable (issue 23): a colour per trial in the learning curves with the best one highlighted
and named, whole-number ticks for integer parameters, numbers to 4 significant digits, class names where the
data loader knows them. Checked on the figures' artists (colours, widths, tick values), not on pixels."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hpsearch.analysis.report.curves import BEST_WIDTH, LEGEND_TRIALS, curves_figure
from hpsearch.analysis.report.data import ReportData, load_report_data
from hpsearch.store import Store, StudyRecord

from .test_report import hb_report  # noqa: F401 (a fixture)


def _trial_traces(figure: dict) -> list[dict]:
    """The curves' line traces (not the dashed links, not the colour bar's)."""
    return [t for t in figure["data"] if t.get("mode") == "lines+markers"]


def _many(data: ReportData, copies: int) -> ReportData:
    """``data`` with its trials repeated ``copies`` times under new ids and numbers (a larger study)."""
    trials, curves = [], {}
    for k in range(copies):
        for t in data.trials:
            parent = None if t.parent_trial_id is None else t.parent_trial_id + 10_000 * k
            number = t.number + len(data.trials) * k
            trials.append(replace(t, id=t.id + 10_000 * k, number=number, parent_trial_id=parent))
            if t.id in data.curves:
                curves[t.id + 10_000 * k] = {e: v - 0.01 * k for e, v in data.curves[t.id].items()}
    return replace(data, trials=trials, curves=curves)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_learning_curves_give_each_trial_a_colour_and_highlight_the_best(
    hb_report: tuple[Store, StudyRecord],  # noqa: F811
) -> None:
    store, study = hb_report
    data = load_report_data(store, study.name)
    assert data.best is not None
    figure = curves_figure(data)
    assert not isinstance(figure, str)
    lines = _trial_traces(figure)
    drawn = [t for t in data.trials if data.curves.get(t.id)]
    assert len(drawn) <= LEGEND_TRIALS
    assert len(lines) == len(drawn)  # one line per trial ...
    colours = [t["line"]["color"] for t in lines]
    assert len(set(colours)) == len(colours)  # ... each in a colour of its own
    assert all(t["showlegend"] for t in lines)  # the legend names every trial
    assert {t["name"].split(" ")[0] for t in lines[:-1]} == {f"#{t.number}" for t in drawn if t.id != data.best.id}
    best = lines[-1]  # drawn last: on top
    assert best["name"].startswith(f"best #{data.best.number}")
    assert best["line"]["width"] == BEST_WIDTH
    assert all(t["line"]["width"] < BEST_WIDTH for t in lines[:-1])
    # A promoted trial's dashed link to its parent has the trial's own colour.
    links = [t for t in figure["data"] if t.get("line", {}).get("dash") == "dash"]
    assert links and all(link["line"]["color"] in colours for link in links)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_learning_curves_of_many_trials_name_them_in_a_colour_bar(
    hb_report: tuple[Store, StudyRecord],  # noqa: F811
) -> None:
    store, study = hb_report
    data = load_report_data(store, study.name)
    assert data.best is not None
    big = _many(data, 4)
    big = replace(big, best=next(t for t in big.trials if t.id == data.best.id))
    figure = curves_figure(big)
    assert not isinstance(figure, str)
    lines = _trial_traces(figure)
    assert len(lines) == len([t for t in big.trials if big.curves.get(t.id)]) > LEGEND_TRIALS
    assert len({t["line"]["color"] for t in lines}) == len(lines)
    shown = [t["name"] for t in lines if t["showlegend"]]
    assert shown == [f"best #{data.best.number} (rung {data.best.rung})"]  # the legend holds the best alone
    bars = [t for t in figure["data"] if t.get("marker", {}).get("showscale")]
    assert len(bars) == 1 and bars[0]["marker"]["colorbar"]["title"]["text"] == "trial #"
    numbers = [t.number for t in big.trials if big.curves.get(t.id)]
    assert (bars[0]["marker"]["cmin"], bars[0]["marker"]["cmax"]) == (min(numbers), max(numbers))
