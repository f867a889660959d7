"""The HTML report: a real Hyperband study in the database (simulated workers, no training), rendered to one
self-contained page; then drawn by headless Chromium, which must find a plot in every container, load
nothing from the network and run none of the script hidden in parameter values, errors, worker names and the
study's name."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import update

from hpsearch.analysis.report import render_report
from hpsearch.control.coordinator import Coordinator
from hpsearch.store import (
    ClaimedTrial,
    FinalJobRecord,
    NewArtifact,
    NewFinalJob,
    NewStudy,
    Store,
    StudyRecord,
    StudyState,
    TrialState,
)
from hpsearch.store.models import Study, TrialAttempt
from hpsearch.strategies.schedulers import Hyperband

PAYLOAD = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_PAYLOAD = '<img src=x onerror="alert(2)">'
PLOTS = ("history", "parallel", "importance", "curves", "slices", "timeline")
SECTIONS = ("summary", *PLOTS, "final-model", "trials")
CHROMIUM = "/usr/bin/chromium"
STUDY = "hb-report"


def _float(name: str, low: float, high: float, sampling: str = "linear", when: dict | None = None) -> dict:
    conditions = [{"class_name": "Parent", "config": {"name": k, "values": v}} for k, v in (when or {}).items()]
    config = {"name": name, "conditions": conditions, "min_value": low, "max_value": high, "step": None}
    return {"class_name": "Float", "config": {**config, "sampling": sampling}}


SPACE = {
    "space": [
        _float("lr", 1e-4, 1e-1, "log"),
        {
            "class_name": "Choice",
            "config": {
                "name": "act",
                "conditions": [],
                "values": ["relu", "tanh", PAYLOAD],
                "ordered": False,
                "default": "relu",
            },
        },
        # Conditional: inactive (missing from the params) unless act is tanh.
        _float("dropout", 0.0, 0.5, when={"act": ["tanh"]}),
    ],
    "values": {},
}


def accuracy(params: dict, epoch: int) -> float:
    penalty = {"relu": 0.0, "tanh": 0.03, PAYLOAD: 0.12}[params["act"]] + 0.1 * params.get("dropout", 0.0)
    return 0.95 - 0.04 * (math.log10(params["lr"]) + 2.5) ** 2 - penalty - 0.3 / epoch


class Clock:
    """Simulated time, so the worker timeline has trials of realistic length (and real idle gaps)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SimWorker:
    id: int
    free_at: datetime
    trial: ClaimedTrial | None = None
    epochs: list[int] = field(default_factory=list)


def simulate_hyperband(store: Store, clock: Clock) -> StudyRecord:
    """Two simulated workers run a Hyperband study (max_epochs 9: 23 trials, rungs 0-2, promotions) epoch by
    epoch in simulated time. The first trial with the payload activation fails with the payload in its error;
    the first new 3-epoch trial loses its worker after one epoch and is resumed (two attempts)."""
    search = {
        "algorithm": "hyperband",
        "max_epochs": 9,
        "factor": 3,
        "hyperband_iterations": 1,
        "max_retries": 1,
        "max_consecutive_failures": 3,
    }
    study, _ = store.create_study(
        NewStudy(
            name=STUDY,
            objective_name="val_accuracy",
            direction="max",
            objectives=[{"name": "val_accuracy", "direction": "max"}],
            algorithm="hyperband",
            max_trials=Hyperband().total_trials(9),
            max_epochs=9,
            seed=11,
            spec={"search": search, "run": {"lease_seconds": 60, "heartbeat_seconds": 1}},
            space=SPACE,
            source_path="/x/hb.toml",
            base_dir="/x",
            artifact_root="/x/a",
        )
    )
    coordinator = Coordinator(store, [STUDY], prefetch=0)
    workers = [
        SimWorker(store.register_worker(PAYLOAD, "node-1", 101, "0"), clock.now),
        SimWorker(store.register_worker(IMG_PAYLOAD, "node-2", 102, "1"), clock.now + timedelta(seconds=3)),
    ]
    failed_once = lost_once = False
    for _ in range(2000):
        worker = min(workers, key=lambda w: w.free_at)
        clock.now = worker.free_at
        if worker.trial is None:
            if not coordinator.step(store.study_by_id(study.id), target_queued=1):
                break
            worker.trial = store.claim(worker.id, study.id)
            if worker.trial is None:  # Hyperband waits for a round to finish: idle until someone reports
                busy = [w.free_at for w in workers if w.trial is not None]
                worker.free_at = min(busy) + timedelta(seconds=1) if busy else clock.now + timedelta(seconds=5)
                continue
            _attempt_started(store, worker.trial.trial_id, clock.now)
            worker.epochs = list(range(worker.trial.initial_epoch + 1, worker.trial.budget_epochs + 1))
            worker.free_at += timedelta(seconds=2)  # start-up: load the data, build the model
            continue
        trial = worker.trial
        epoch = worker.epochs.pop(0)
        value = accuracy(trial.params, epoch)
        logs = {"val_accuracy": value, "loss": 1.0 - value}
        assert store.record_epoch(trial.trial_id, worker.id, epoch, logs, "val_accuracy", "max")
        # A checkpoint row per epoch (no file behind it): a promoted trial resumes from its parent's epochs and a
        # re-run attempt from its own, as with real workers.
        store.record_checkpoint(
            NewArtifact(
                study_id=study.id,
                trial_id=trial.trial_id,
                kind="checkpoint",
                epoch=epoch,
                uri=f"/x/a/{STUDY}/trials/{trial.number}/epoch-{epoch}.keras",
                sha256="0" * 64,
                size_bytes=1,
            )
        )
        seconds = 4 if trial.params["act"] == "tanh" else 3
        if trial.params["act"] == PAYLOAD and not failed_once:
            failed_once = True
            error = f"ValueError: unknown activation {PAYLOAD}\nTraceback (most recent call last): ..."
            store.finish(trial.trial_id, worker.id, TrialState.FAILED, error=error)
            worker.epochs = []
        elif trial.budget_epochs == 3 and trial.initial_epoch == 0 and not lost_once:
            lost_once = True  # after its first epoch; the next attempt resumes from epoch 1
            assert store.retry(trial.trial_id, worker.id, f"worker {IMG_PAYLOAD} lost") == TrialState.QUEUED
            worker.epochs = []
            seconds += 20  # the worker restarts
        elif not worker.epochs:
            store.finish(trial.trial_id, worker.id, TrialState.COMPLETED)
        if not worker.epochs:
            worker.trial = None
        worker.free_at = clock.now + timedelta(seconds=seconds)
    else:
        raise AssertionError("the simulated study did not finish")
    for worker in workers:
        store.worker_stopped(worker.id)
    return store.study_by_id(study.id)


def _attempt_started(store: Store, trial_id: int, now: datetime) -> None:
    """claim() stamps its TrialAttempt with the column default (models.utcnow), which the simulated clock
    cannot replace; set the simulated time afterwards."""
    with store.session() as session:
        session.execute(
            update(TrialAttempt)
            .where(TrialAttempt.trial_id == trial_id, TrialAttempt.ended_at.is_(None))
            .values(started_at=now)
        )


@pytest.fixture
def hb_report(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, StudyRecord]]:
    clock = Clock()
    # Every store module that stamps times (not models: column defaults, see _attempt_started).
    for name, module in list(sys.modules.items()):
        if name.startswith("hpsearch.store.") and name != "hpsearch.store.models" and hasattr(module, "utcnow"):
            monkeypatch.setattr(module, "utcnow", clock)
    study = simulate_hyperband(store, clock)
    monkeypatch.undo()
    trials = store.trials(study.id)
    assert study.state == StudyState.COMPLETED
    assert len(trials) == Hyperband().total_trials(9)
    assert {t.rung for t in trials} == {0, 1, 2} and any(t.parent_trial_id for t in trials)
    assert any(t.state == TrialState.FAILED and PAYLOAD in (t.error or "") for t in trials)
    assert any(t.state == TrialState.COMPLETED and t.params["act"] == PAYLOAD for t in trials)
    assert any("dropout" in t.params for t in trials) and any("dropout" not in t.params for t in trials)
    outcomes = []
    for trial in trials:  # promoted trials continued their parent; attempts are in simulated time
        assert min(store.metrics(trial.id)) == trial.initial_epoch + 1
        attempts = store.attempts(trial.id)
        assert all(a.ended_at is not None and a.started_at < a.ended_at for a in attempts)
        outcomes.append([a.outcome for a in attempts])
    assert outcomes.count(["LOST", "COMPLETED"]) == 1 and outcomes.count(["FAILED"]) == 1
    yield store, study


class _Tags(HTMLParser):
    """Every start tag with its attributes (the text of <script> and <style> is not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _assert_loads_nothing_remote(page: str) -> None:
    tags = _tags(page)
    assert not [t for t, _ in tags if t in ("link", "iframe", "object", "embed", "base")]
    for tag, attrs in tags:
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (tag, attrs)
    for needle in ('src="http', "src='http", "@import", "url(http", "url(//"):
        assert page.count(needle) == 0, needle


def test_report_has_every_section_loads_nothing_and_escapes_user_strings(hb_report: tuple[Store, StudyRecord]) -> None:
    store, study = hb_report
    page = render_report(store, study.name)
    for section in SECTIONS:
        assert page.count(f'<section id="{section}">') == 1, section
    for plot in PLOTS:
        assert page.count(f'<div class="plot" id="plot-{plot}">') == 1, plot
    assert page.count("No final model yet (run <code>hpsearch promote</code>)") == 1
    # plotly.js inline, once; no <script src=...> at all
    scripts = [attrs for tag, attrs in _tags(page) if tag == "script"]
    assert scripts and all("src" not in attrs for attrs in scripts)
    assert page.count("Plotly.newPlot") == len(PLOTS)
    assert page.count("default-src 'none'") == 1  # the Content-Security-Policy
    _assert_loads_nothing_remote(page)
    # The payloads: shown as text, never as markup.
    # (str.count keeps pytest from printing the 5 MB page when an assertion fails)
    assert page.count(f"<code>act={ESCAPED}</code>") > 0  # a parameter value, in the table and the summary
    assert page.count(f"<td>{ESCAPED}</td>") > 0  # a worker's name
    assert page.count(f"ValueError: unknown activation {ESCAPED}") > 0  # an error's first line
    assert page.count("&lt;img src=x onerror=&quot;alert(2)&quot;&gt;") > 0
    assert page.count(PAYLOAD) == 0
    assert page.count(IMG_PAYLOAD) == 0 and page.count("<img") == 0
    # Figures get the escaped text too (plotly shows it as the original characters; its JSON escapes "/").
    assert page.count("&lt;script&gt;alert(1)&lt;\\u002fscript&gt;") > 0
    # The whole table: one row per trial, the best one marked.
    assert page.count("<tr") == len(store.trials(study.id)) + 1
    assert page.count('<tr class="best">') == 1


def test_report_of_a_study_without_trials_explains_instead_of_failing(store: Store) -> None:
    from ..conftest import add_study

    study = add_study(store, "empty")
    page = render_report(store, study.name)
    assert page.count("No completed trial yet.") == 3  # history, parallel coordinates, slices
    assert page.count("No epoch reported yet.") == 1 and page.count("No trial has started yet.") == 1
    assert page.count("at least two completed trials") == 1
    assert page.count('<div class="plot"') == 0
    _assert_loads_nothing_remote(page)


def test_report_of_a_running_study_shows_what_there_is(store: Store) -> None:
    """A random-search study with one trial running (one epoch reported) and the others queued."""
    from ..control.test_coordinator import budget_study

    study = budget_study(store, "running")
    assert Coordinator(store, ["running"], prefetch=2).step(study, target_queued=3)
    worker = store.register_worker("w-1", "host", 1, None)
    claimed = store.claim(worker, study.id)
    assert claimed is not None
    store.record_epoch(claimed.trial_id, worker, 1, {"val_accuracy": 0.6}, "val_accuracy", "max")
    page = render_report(store, study.name)
    for plot in ("curves", "timeline"):
        assert page.count(f'<div class="plot" id="plot-{plot}">') == 1, plot
    assert page.count("No completed trial yet.") == 3 and page.count("no completed trial yet") == 1
    assert page.count("RUNNING 1") == 1 and page.count("QUEUED 2") == 1  # the counts in the summary
    _assert_loads_nothing_remote(page)


# --- in a browser ----------------------------------------------------------------------------------------

# Test-only instrumentation prepended to the page: a dialog (alert, confirm, prompt) leaves a mark in the DOM.
_DIALOG_HOOK = (
    "<script>for (const name of ['alert', 'confirm', 'prompt']) { window[name] = (message) => "
    "document.documentElement.setAttribute('data-dialog', name + ':' + message); }</script>"
)


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        # parcoords draws its lines with WebGL: use the software implementation
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _page_requests(net_log: Path) -> list[str]:
    """The URLs the page asked Chromium's network stack for (from --log-net-log). Chromium's own background
    requests (network time, component updates) have no origin as initiator; the page's have its origin."""
    text = net_log.read_text().rstrip()
    if not text.endswith("}"):  # Chromium may leave the events array unterminated
        text = text.rstrip(",") + "]}"
    log = json.loads(text)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    params = [event.get("params") or {} for event in log.get("events", []) if event.get("type") == start_job]
    return [str(p["url"]) for p in params if "url" in p and p.get("initiator") != "not an origin"]


def add_final_job(store: Store, study: StudyRecord) -> FinalJobRecord:
    """A completed final job as a worker records it (no training), with a payload in a slice value."""
    best = store.best_trial(study)
    assert best is not None
    job, _ = store.create_final_job(
        NewFinalJob(study_id=study.id, trial_id=best.id, params=best.params, train_on="train", epochs=5, seed=1)
    )
    worker = store.register_worker("final-worker", "host", 1, None)
    assert store.claim_final_job(worker, job_id=job.id) is not None
    store.record_final_epoch(job.id, worker, 1, {"loss": 0.5, "val_accuracy": 0.8})
    slice_row = {
        "threshold": 0.5,
        "count": 10,
        "positives": 4,
        "accuracy": 0.8,
        "false_positive_rate": 0.1,
        "false_negative_rate": 0.25,
        "precision": 0.75,
        "recall": 0.75,
        "f1": 0.75,
        "auc": 0.9,
    }
    assert store.finish_final_job(
        job.id,
        worker,
        best_epoch=1,
        objective=0.8,
        test_metrics={"loss": 0.4, "accuracy": 0.81},
        confusion={"labels": ["0", "1"], "matrix": [[5, 1], [1, 3]]},
        class_rows=[
            {"class_label": "0", "precision": 0.83, "recall": 0.83, "f1": 0.83, "support": 6},
            {"class_label": "1", "precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4},
        ],
        slice_rows=[
            {"slice": "all", "slice_value": "all", **slice_row},
            {"slice": "g", "slice_value": PAYLOAD, **slice_row},
        ],
        artifacts=[NewArtifact(study_id=study.id, kind="keras", uri="/a/model.keras", sha256="0" * 64, size_bytes=1)],
    )
    return store.final_job(job.id)


def test_the_final_model_section_shows_the_newest_completed_job(hb_report: tuple[Store, StudyRecord]) -> None:
    store, study = hb_report
    add_final_job(store, study)
    page = render_report(store, study.name)
    section = page[page.index('<section id="final-model">') : page.index('<section id="trials">')]
    assert "No final model yet" not in section
    assert '<div class="plot" id="plot-confusion">' in section
    assert "<td>accuracy</td><td>0.81</td>" in section  # test metrics
    assert "<td>1</td><td>0.75</td><td>0.75</td><td>0.75</td><td>4</td>" in section  # per class
    assert f"<td>g</td><td>{ESCAPED}</td><td>0.5</td><td>10</td>" in section  # per slice, escaped
    assert "/a/model.keras" in section


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_renders_in_headless_chromium(hb_report: tuple[Store, StudyRecord], tmp_path: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run this test")
    store, study = hb_report
    add_final_job(store, study)
    # The spec's name rule forbids such a name; one written into the database by hand must still be text.
    with store.session() as session:
        session.execute(update(Study).where(Study.id == study.id).values(name=PAYLOAD))
    report = tmp_path / "report.html"
    report.write_text(render_report(store, PAYLOAD).replace("<head>", "<head>" + _DIALOG_HOOK, 1))

    net_log = tmp_path / "netlog.json"
    done = _chromium(tmp_path, report, "--dump-dom", f"--log-net-log={net_log}")
    assert done.returncode == 0, done.stderr[-3000:]
    dom = done.stdout
    assert dom.rstrip().endswith("</html>"), done.stderr[-3000:]
    for plot in (*PLOTS, "confusion"):
        start = dom.index(f'id="plot-{plot}"')
        container = dom[start : dom.index("</section>", start)]
        assert container.count("<svg") > 0, f"plotly drew nothing in plot-{plot}"
        assert container.count("main-svg") > 0, f"plotly drew nothing in plot-{plot}"
        assert container.count("WebGL is not supported") == 0, f"plot-{plot}: no WebGL"
    # No dialog ran (the hook marks <html>), and no payload became an element.
    html_attrs = next(attrs for tag, attrs in _tags(dom) if tag == "html")
    assert "data-dialog" not in html_attrs, html_attrs
    assert dom.count(PAYLOAD) == 0, "the payload became a <script> element"
    assert dom.count("<img") == 0, "the worker name became an <img> element"
    assert dom.count(ESCAPED) > 0
    assert dom.count(f"<title>hpsearch report: {ESCAPED}</title>") == 1  # the study's name, as text
    # Nothing was fetched but the page itself.
    remote = [url for url in _page_requests(net_log) if not url.startswith(("file:", "data:", "blob:"))]
    assert not remote, remote

    screenshot = tmp_path / "report.png"
    shot = _chromium(tmp_path, report, f"--screenshot={screenshot}", "--window-size=1400,4000", "--hide-scrollbars")
    assert shot.returncode == 0, shot.stderr[-3000:]
    assert screenshot.stat().st_size > 50_000
    print(f"screenshot: {screenshot}")
