"""The ``hpsearch`` command as a user runs it: real processes, real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import write_tiny_study

pytestmark = pytest.mark.slow


def hpsearch(*args: str, cwd: Path, db: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("HPSEARCH_DB", None)
    if db is not None:
        env["HPSEARCH_DB"] = db
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def table_count(db: str, table: str) -> int:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(table):
                return 0
            return int(connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_run_then_status_best_trials(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path, max_trials=4, max_epochs=2, workers=2)
    result = hpsearch("run", str(path), cwd=tmp_path, db=db_url)
    assert result.returncode == 0, result.stderr
    assert "best trial" in result.stdout

    status = json.loads(hpsearch("status", "--json", cwd=tmp_path, db=db_url).stdout)
    assert status[0]["state"] == "COMPLETED"
    assert status[0]["trials"]["COMPLETED"] == 4

    trials = json.loads(hpsearch("trials", "tiny", "--json", "--sort", "objective", cwd=tmp_path, db=db_url).stdout)
    assert [t["state"] for t in trials] == ["COMPLETED"] * 4
    assert all(t["epochs_done"] == 2 and t["params"] for t in trials)
    objectives = [t["objective"] for t in trials]
    assert objectives == sorted(objectives, reverse=True)

    best = json.loads(hpsearch("best", "tiny", "--json", cwd=tmp_path, db=db_url).stdout)
    assert best["best"]["objective"] == objectives[0]
    assert best["best"]["best_epoch"] in (1, 2)
    assert table_count(db_url, "trial_metrics") >= 4 * 2 * 4  # 4 trials x 2 epochs x 4 metrics
    # Two worker processes really took part, each registered with its host.
    workers = {t["number"]: t for t in trials}
    assert len(workers) == 4
    assert table_count(db_url, "workers") == 2


def test_default_database_is_hpsearch_db_in_the_working_directory(tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=1, workers=1)
    result = hpsearch("study", "create", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hpsearch.db").exists()
    assert table_count(f"sqlite:///{tmp_path / 'hpsearch.db'}", "studies") == 1


BAD_MODULE = """

def raises(hp):
    raise ValueError("bad layer")


def mismatched():
    data = load_data()
    x, y = data["train"]
    data["train"] = (x, y[:-3])
    return data


def not_a_model(hp):
    return "model"


def uncompiled(hp):
    import keras

    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
"""


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        ({"text": "[study\nname = 1"}, "tiny.toml", "invalid TOML"),
        ({"append": "\n[search.extra]\nx = 1\n"}, "search.extra", "unknown field"),
        ({"append": '\n[space.lr]\ntype = "float"\nmin = 0.5\nmax = 0.1\n'}, "space.lr", "min 0.5 > max 0.1"),
        ({"replace": "nosuch.py:load_data"}, "nosuch.py:load_data", "no such file"),
        ({"build": "missing_function"}, "tiny.py:missing_function", "has no attribute 'missing_function'"),
        ({"build": "raises"}, "tiny.py:raises", "raised ValueError: bad layer"),
        ({"build": "not_a_model"}, "tiny.py:not_a_model", "not a keras.Model"),
        ({"build": "uncompiled"}, "tiny.py:uncompiled", "not compiled"),
        ({"data": "mismatched"}, "tiny.py:mismatched: train", "different lengths [157, 160]"),
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_no_study(
    tmp_path: Path, db_url: str, change: dict[str, str], where: str, what: str
) -> None:
    fields = {k: v for k, v in change.items() if k in ("build", "data")}
    path = write_tiny_study(tmp_path, extra_module=BAD_MODULE, **fields)
    if "text" in change:
        path.write_text(change["text"])
    if "replace" in change:
        path.write_text(path.read_text().replace("tiny.py:load_data", change["replace"]))
    if "append" in change:
        path.write_text(path.read_text() + change["append"])
    result = hpsearch("study", "create", str(path), cwd=tmp_path, db=db_url)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert where in lines[0] and what in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert table_count(db_url, "studies") == 0


def test_unknown_study_and_trial_sort_are_usage_errors(tmp_path: Path, db_url: str) -> None:
    write_tiny_study(tmp_path)
    assert hpsearch("db", "upgrade", cwd=tmp_path, db=db_url).returncode == 0
    result = hpsearch("best", "nope", cwd=tmp_path, db=db_url)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: study nope: no such study (see `hpsearch status`)"


def test_unreachable_database_and_malformed_url(tmp_path: Path) -> None:
    result = hpsearch("status", cwd=tmp_path, db="postgresql+psycopg://bob:hunter2@127.0.0.1:1/x")
    assert result.returncode == 1
    assert result.stderr.startswith("error: postgresql+psycopg://bob:***@127.0.0.1:1/x: cannot use the database")
    assert "hunter2" not in result.stdout + result.stderr
    malformed = hpsearch("status", cwd=tmp_path, db="not a url:hunter2@")
    assert malformed.returncode == 2
    assert malformed.stderr.startswith("error: --db: malformed database URL")
    assert "hunter2" not in malformed.stderr


def test_a_password_in_the_url_appears_nowhere(tmp_path: Path, db_url: str) -> None:
    """Every output, log, report, export and row of a study run with a password in its database URL."""
    if not db_url.startswith("postgresql"):
        pytest.skip("only a server URL carries a password")
    # The local server trusts its clients, so any password connects: the run is real.
    url = sa.engine.make_url(db_url).set(password="Sup3rS3cret").render_as_string(hide_password=False)
    path = write_tiny_study(tmp_path, max_trials=2, max_epochs=1, workers=1)
    outputs = [hpsearch("run", str(path), "--artifacts", str(tmp_path / "art"), cwd=tmp_path, db=url)]
    commands = [
        ["status"],
        ["status", "--json"],
        ["best", "tiny"],
        ["trials", "tiny"],
        ["show", "tiny", "0", "--json"],
        ["report", "tiny", "-o", "report.html"],
        ["export", "tiny", "-o", "trials.csv"],
        ["export", "tiny", "--format", "json", "--metrics", "-o", "curves.json"],
        ["export", "tiny", "--format", "parquet", "-o", "trials.parquet"],
        ["gc", "tiny", "--dry-run"],
        ["db", "upgrade"],
        ["--debug", "status"],
    ]
    outputs += [hpsearch(*cmd, cwd=tmp_path, db=url) for cmd in commands]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    # And where things go wrong, with and without --debug (tracebacks quote URLs).
    failing = [["best", "nope"], ["--debug", "best", "nope"], ["--debug", "study", "create", "nowhere.toml"]]
    outputs += [hpsearch(*cmd, cwd=tmp_path, db=url) for cmd in failing]
    for output in outputs:
        assert "Sup3rS3cret" not in output.stdout + output.stderr, output.args
    assert "***" in outputs[0].stdout  # the masked URL is shown instead
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert {"report.html", "trials.csv", "curves.json", "trials.parquet"} <= {f.name for f in written}
    assert [f for f in written if f.suffix == ".log"], "the workers wrote no logs"
    for file in written:
        assert b"Sup3rS3cret" not in file.read_bytes(), file
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
        rows = {t: connection.execute(sa.text(f'SELECT * FROM "{t}"')).all() for t in tables}
    engine.dispose()
    assert rows["studies"] and rows["trials"]
    assert "Sup3rS3cret" not in repr(rows)


def test_coordinator_and_workers_as_separate_processes(tmp_path: Path, db_url: str) -> None:
    path = write_tiny_study(tmp_path, max_trials=4, max_epochs=1)
    assert hpsearch("study", "create", str(path), cwd=tmp_path, db=db_url).returncode == 0
    env = {**os.environ, "HPSEARCH_DB": db_url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "hpsearch"]
    processes = [
        subprocess.Popen([*command, "coordinator", "--exit-when-done"], cwd=tmp_path, env=env),
        subprocess.Popen([*command, "worker", "--study", "tiny", "--exit-when-done"], cwd=tmp_path, env=env),
        subprocess.Popen([*command, "worker", "--idle-timeout", "5"], cwd=tmp_path, env=env),
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0]
    status = json.loads(hpsearch("status", "tiny", "--json", cwd=tmp_path, db=db_url).stdout)[0]
    assert status["state"] == "COMPLETED" and status["trials"]["COMPLETED"] == 4
    trials = json.loads(hpsearch("trials", "tiny", "--json", cwd=tmp_path, db=db_url).stdout)
    assert len(trials) == 4


def test_multi_objective_study_shows_its_pareto_front(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mo.db'}"
    path = write_tiny_study(tmp_path, algorithm="tpe", max_trials=6, max_epochs=1, workers=1)  # the front is the point
    path.write_text(
        path.read_text()
        .replace(
            'objective = "val_accuracy"',
            'objective = ["val_accuracy", { name = "num_params", direction = "min" }]',
        )
        .replace("[search]", "[search]\nn_startup_trials = 3")
    )
    assert hpsearch("run", str(path), cwd=tmp_path, db=db).returncode == 0
    trials = json.loads(hpsearch("trials", "tiny", "--json", cwd=tmp_path, db=db).stdout)
    assert [t["state"] for t in trials] == ["COMPLETED"] * 6
    front = json.loads(hpsearch("best", "tiny", "--json", cwd=tmp_path, db=db).stdout)["front"]
    assert front
    points = [(t["values"]["val_accuracy"], t["values"]["num_params"]) for t in front]
    engine = sa.create_engine(db)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT objective_values FROM trials")).scalars().all()
    engine.dispose()
    everyone = [json.loads(r) if isinstance(r, str) else r for r in rows]
    for accuracy, size in points:  # nobody beats a front member in both objectives
        assert not any(a >= accuracy and s <= size and (a, s) != (accuracy, size) for a, s in everyone)
    front_numbers = {t["number"] for t in front}
    for (accuracy, size), trial in zip(everyone, trials, strict=True):  # everyone else is beaten by someone
        if trial["number"] not in front_numbers:
            assert any(a >= accuracy and s <= size and (a, s) != (accuracy, size) for a, s in everyone)


def test_sigterm_hands_the_running_trial_back_and_stops_the_worker(tmp_path: Path) -> None:
    import signal
    import time

    db = f"sqlite:///{tmp_path / 'term.db'}"
    slow = (
        "\n\nimport time as _t\nimport keras as _k\n\n\nclass Slow(_k.callbacks.Callback):\n"
        "    def on_epoch_end(self, epoch, logs=None):\n        _t.sleep(1)\n"
    )
    path = write_tiny_study(tmp_path, extra_module=slow, max_trials=1, max_epochs=30)
    path.write_text(path.read_text().replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:Slow" }]'))
    assert hpsearch("study", "create", str(path), cwd=tmp_path, db=db).returncode == 0
    env = {**os.environ, "HPSEARCH_DB": db, "TF_CPP_MIN_LOG_LEVEL": "3"}
    coordinator = subprocess.Popen([sys.executable, "-m", "hpsearch", "coordinator"], cwd=tmp_path, env=env)
    worker = subprocess.Popen([sys.executable, "-m", "hpsearch", "worker"], cwd=tmp_path, env=env)
    engine = sa.create_engine(db)
    try:
        for _ in range(120):
            with engine.connect() as connection:
                if connection.execute(sa.text("SELECT epochs_done FROM trials")).scalar() or 0:
                    break
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        coordinator.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 130 and coordinator.wait(timeout=60) == 130
        with engine.connect() as connection:
            trial = connection.execute(sa.text("SELECT state, retries FROM trials")).one()
            workers = connection.execute(sa.text("SELECT state FROM workers")).scalars().all()
            outcome = connection.execute(sa.text("SELECT outcome FROM trial_attempts")).scalar()
    finally:
        worker.kill()
        coordinator.kill()
        engine.dispose()
    assert tuple(trial) == ("QUEUED", 0) and outcome == "RELEASED"
    assert workers == ["STOPPED"]


def test_show_export_optuna_report_then_gc_on_one_finished_study(tmp_path: Path) -> None:
    """The commands that read a finished study, on one `hpsearch run` (each used to run a study of its own):
    show, export (csv, parquet, json curves, Optuna), report; then gc, which frees checkpoints, last."""
    import optuna
    import pandas as pd

    db = f"sqlite:///{tmp_path / 'x.db'}"
    path = write_tiny_study(tmp_path, max_trials=3, max_epochs=2, workers=1)
    assert hpsearch("run", str(path), "--artifacts", str(tmp_path / "art"), cwd=tmp_path, db=db).returncode == 0

    # show and export
    shown = json.loads(hpsearch("show", "tiny", "1", "--json", cwd=tmp_path, db=db).stdout)
    assert shown["number"] == 1 and sorted(shown["curve"]) == ["1", "2"]
    assert [a["outcome"] for a in shown["attempts"]] == ["COMPLETED"]
    missing = hpsearch("show", "tiny", "7", cwd=tmp_path, db=db)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: trial 7: no such trial in this study"

    csv = hpsearch("export", "tiny", cwd=tmp_path, db=db)
    assert csv.returncode == 0 and csv.stdout.splitlines()[0].startswith("study,number,state,objective")
    assert hpsearch("export", "tiny", "--format", "parquet", "-o", "t.parquet", cwd=tmp_path, db=db).returncode == 0
    frame = pd.read_parquet(tmp_path / "t.parquet")
    assert list(frame["number"]) == [0, 1, 2] and {"param_units", "param_lr"} <= set(frame.columns)
    curves = json.loads(hpsearch("export", "tiny", "--metrics", "--format", "json", cwd=tmp_path, db=db).stdout)
    assert {(r["number"], r["epoch"]) for r in curves if r["name"] == "val_accuracy"} == {
        (n, e) for n in range(3) for e in (1, 2)
    }
    bad = hpsearch("export", "tiny", "--format", "xls", cwd=tmp_path, db=db)
    assert bad.returncode == 2 and "must be one of csv, parquet, json" in bad.stderr

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    copied = hpsearch("export", "tiny", "--optuna", storage, cwd=tmp_path, db=db)
    assert copied.returncode == 0 and "copied 3 trials" in copied.stdout
    loaded = optuna.load_study(study_name="tiny", storage=storage)
    assert loaded.best_value == max(
        t["objective"] for t in json.loads(hpsearch("trials", "tiny", "--json", cwd=tmp_path, db=db).stdout)
    )
    assert sorted(loaded.trials[0].intermediate_values) == [1, 2]
    again = hpsearch("export", "tiny", "--optuna", storage, cwd=tmp_path, db=db)
    assert again.returncode == 2 and again.stderr.startswith("error: --optuna sqlite:///")

    # report: one self-contained page
    result = hpsearch("report", "tiny", "-o", "out.html", cwd=tmp_path, db=db)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "out.html").read_text()
    assert page.count('class="plot"') >= 5 and "<script src=" not in page
    missing = hpsearch("report", "nope", cwd=tmp_path, db=db)
    assert missing.returncode == 2 and not (tmp_path / "report.html").exists()

    # gc keeps the best checkpoint and frees the rest (last: it deletes files)
    (own,) = (tmp_path / "art").glob("tiny-*")  # the study's own directory under the root (issue 24)
    files = sorted((own / "tiny" / "trials").glob("*/checkpoint-*.weights.h5"))
    assert len(files) == 3
    dry = hpsearch("gc", "tiny", "--dry-run", cwd=tmp_path, db=db)
    assert "would free 2 checkpoints" in dry.stdout and len(list(files[0].parent.parent.glob("*/*.h5"))) == 3
    assert "freed 2 checkpoints" in hpsearch("gc", "tiny", cwd=tmp_path, db=db).stdout
    best = json.loads(hpsearch("best", "tiny", "--json", cwd=tmp_path, db=db).stdout)["best"]["number"]
    assert [p.parent.name for p in (own / "tiny" / "trials").glob("*/*.h5")] == [str(best)]
    assert table_count(db, "artifacts") == 1
