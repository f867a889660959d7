"""The report is readable (issue 23): a colour per trial in the learning curves with the best one highlighted
and named, whole-number ticks for integer parameters, numbers to 4 significant digits, class names where the
data loader knows them. Checked on the figures' artists (colours, widths, tick values), not on pixels."""

from __future__ import annotations

import re
from dataclasses import fields, replace

import pytest

from hpsearch.analysis.dashboard.layout import cell
from hpsearch.analysis.dashboard.pages import _final_job
from hpsearch.analysis.export import trials_frame, write_frame
from hpsearch.analysis.report import figures
from hpsearch.analysis.report.curves import BEST_WIDTH, LEGEND_TRIALS, curves_figure
from hpsearch.analysis.report.data import Axis, ReportData, TrialInfo, axes, load_report_data
from hpsearch.analysis.report.page import render_page
from hpsearch.analysis.report.plotting import fmt
from hpsearch.space import SearchSpace
from hpsearch.store import Store, StudyRecord

from .test_report import ESCAPED, PAYLOAD, add_final_job, hb_report  # noqa: F401 (hb_report is a fixture)


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


def _with_integer_params(data: ReportData) -> ReportData:
    """``data`` with three integer parameters: layers 1-3, units 16-320 and batch 8-256 on a log scale."""
    trials = [
        replace(t, params={**t.params, "layers": 1 + t.number % 3, "units": 16 * (1 + t.number * 7 % 20),
                           "batch": 2 ** (3 + t.number % 6)})
        for t in data.trials
    ]  # fmt: skip
    integers = [
        Axis("layers", numeric=True, integer=True),
        Axis("units", numeric=True, integer=True),
        Axis("batch", numeric=True, log=True, integer=True),
    ]
    best = next((t for t in trials if data.best is not None and t.id == data.best.id), None)
    return replace(data, trials=trials, axes=[*data.axes, *integers], best=best)


def _whole(values: list) -> bool:
    return all(float(v) == int(float(v)) for v in values)


def test_an_int_parameter_is_an_integer_axis() -> None:
    space = SearchSpace(
        {
            "space": [
                {"class_name": "Int", "config": {"name": "units", "min_value": 16, "max_value": 512, "step": 16,
                                                 "sampling": "linear", "conditions": []}},
                {"class_name": "Float", "config": {"name": "lr", "min_value": 1e-4, "max_value": 1e-1,
                                                   "step": None, "sampling": "log", "conditions": []}},
            ],
            "values": {},
        }
    )  # fmt: skip
    base = dict.fromkeys(f.name for f in fields(TrialInfo))
    trials = [
        TrialInfo(**{**base, "number": i, "params": {"units": 16 * (i + 1), "lr": 10.0 ** -(i + 1), "seed": i}})
        for i in range(3)
    ]
    found = {a.name: a for a in axes(space.params, trials)}
    assert found["units"].integer and not found["lr"].integer
    assert found["seed"].integer  # known only from the trials, every value an int


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_integer_parameters_get_whole_number_ticks_in_every_figure(
    hb_report: tuple[Store, StudyRecord],  # noqa: F811
) -> None:
    store, study = hb_report
    data = _with_integer_params(load_report_data(store, study.name))
    parallel = figures.parallel_figure(data)
    assert not isinstance(parallel, str)
    dimensions = {d["label"]: d for d in parallel["data"][0]["dimensions"]}
    assert dimensions["layers"]["ticktext"] == ["1", "2", "3"]  # not 1, 1.5, 2, 2.5, 3
    assert _whole(dimensions["layers"]["tickvals"]) and _whole(dimensions["units"]["ticktext"])
    assert _whole(dimensions["units"]["tickvals"]) and len(dimensions["units"]["tickvals"]) >= 3
    batch = dimensions["batch (log)"]  # log10 positions of whole numbers
    pairs = zip(batch["tickvals"], batch["ticktext"], strict=True)
    assert _whole(batch["ticktext"]) and all(abs(10**p - int(t)) < 1e-6 for p, t in pairs)
    slices = figures.slices_figure(data, {"layers": 1.0, "units": 0.5, "batch": 0.2})
    assert not isinstance(slices, str)
    assert [a["text"] for a in slices["layout"]["annotations"]] == ["layers", "units", "batch"]
    xaxes = [slices["layout"][k] for k in ("xaxis", "xaxis2", "xaxis3")]
    for xaxis in xaxes[:2]:  # linear: ticks every whole step from 0
        assert xaxis["tick0"] == 0 and isinstance(xaxis["dtick"], int) and xaxis["dtick"] >= 1
    assert xaxes[0]["dtick"] == 1
    assert xaxes[2]["type"] == "log" and _whole(xaxes[2]["tickvals"]) and len(xaxes[2]["tickvals"]) >= 2
    history = figures.history_figure(data)
    assert not isinstance(history, str) and history["layout"]["xaxis"]["dtick"] >= 1  # trial numbers


@pytest.mark.parametrize(
    ("value", "text"),
    [(1 / 3, "0.3333"), (0.5, "0.5"), (0.81, "0.81"), (2.5e-05, "2.5e-05"), (12345.6, "12350"), (123.456, "123.5"),
     (-0.0, "0"), (1e9, "1e+09"), (7, "7"), (True, "True"), ("relu", "relu"), (float("nan"), "nan")],
)  # fmt: skip
def test_numbers_are_shown_to_four_significant_digits(value: object, text: str) -> None:
    assert fmt(value) == text
    assert cell(value) == text  # the dashboard's table cells


def _long(text: str) -> list[str]:
    """The decimal numbers in ``text`` with more than 4 significant digits (the old format wrote 6)."""
    numbers = re.findall(r"(?<![\w.])\d+\.\d+", text)
    return [n for n in numbers if len(n.replace(".", "").lstrip("0")) > 4]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_tables_use_four_significant_digits_and_exports_keep_full_precision(
    hb_report: tuple[Store, StudyRecord],  # noqa: F811
) -> None:
    store, study = hb_report
    add_final_job(store, study)
    data = load_report_data(store, study.name)
    assert data.final is not None and data.best is not None
    final = replace(data.final, test_metrics={"loss": 0.123456789, "accuracy": 0.987654321})
    seconds = {t.id: 12.3456789 + t.number for t in data.trials}
    data = replace(data, final=final, trials=[replace(t, duration_seconds=seconds[t.id]) for t in data.trials])
    page = render_page(data)
    tables = page[page.index('<section id="summary">') : page.index('<section id="history">')]
    tables += page[page.index('<section id="final-model">') :]
    tables = re.sub(r"<script.*?</script>", "", tables, flags=re.S)  # the figures' data stays exact
    assert not _long(tables), _long(tables)[:5]
    assert "<td>loss</td><td>0.1235</td>" in tables and "<td>accuracy</td><td>0.9877</td>" in tables
    for trial in data.completed:
        assert f'<td class="num">{fmt(trial.objective)}</td>' in tables
        assert f'<td class="num">{fmt(seconds[trial.id])}</td>' in tables
    assert f"= <b>{fmt(data.best.objective)}</b>" in tables  # the summary's best trial
    # The exports are data: every digit kept.
    text = write_frame(trials_frame(store, study), "csv", None)
    assert text is not None
    assert all(repr(t.objective) in text for t in data.completed)
    assert _long(text)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_classes_are_named_where_the_loader_named_them(hb_report: tuple[Store, StudyRecord]) -> None:  # noqa: F811
    store, study = hb_report
    add_final_job(store, study)
    data = load_report_data(store, study.name)
    assert data.final is not None and data.final.confusion_matrix is not None
    unnamed = render_page(data)
    assert "<tr><td>1</td><td>0.75</td>" in unnamed  # no names: the indices, as before
    named = {**data.final.confusion_matrix, "class_names": ["died", PAYLOAD]}
    data = replace(data, final=replace(data.final, confusion_matrix=named))
    page = render_page(data)
    section = page[page.index('<section id="final-model">') : page.index('<section id="trials">')]
    assert "<tr><td>died</td><td>0.83</td>" in section and f"<tr><td>{ESCAPED}</td><td>0.75</td>" in section
    heatmap = figures.confusion_figure(named)["data"][0]
    assert heatmap["x"] == heatmap["y"] == ["died", "&lt;script&gt;alert(1)&lt;/script&gt;"]
    # The dashboard's final-model page reads the same JSON.
    job = {"state": "COMPLETED", "trial_number": 1, "train_on": "train", "epochs_done": 1, "epochs": 1,
           "best_epoch": 1, "objective": 0.8, "error": None, "test_metrics": {}, "slices": [], "exports": [],
           "number": 1, "confusion_matrix": named,
           "classes": [{"class_label": "0", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
                       {"class_label": "1", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}]}  # fmt: skip
    html = _final_job(job).html
    assert "<tr><td>died</td>" in html and f"<tr><td>{ESCAPED}</td>" in html
