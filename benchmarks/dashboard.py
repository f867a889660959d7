"""Server time of the dashboard at 100, 1,000 and 10,000 trials (about 3 metric rows per trial).

Each size gets a database of its own, created for the run and removed after it (SQLite: a file in a
temporary directory; PostgreSQL: a scratch database ``hpsearch_bench_<random>`` on the server given, dropped
at the end; nothing else on that server is touched). A study is written straight into it (bulk inserts:
trials over two workers, three epochs of val_accuracy and loss each, one attempt each), then each page is
requested in-process through Starlette's TestClient (no network; the time is the handler's, with the
client's small overhead), several times:

- studies page (``/``), and the studies API;
- study page (``/studies/{name}``) first build (the page cache cleared before each request: read the
  snapshot, build every figure, render the page); parameter importance is computed once beforehand, as the
  background thread does, so that its seconds of CPU do not land in the page's time (it is timed on its own);
- study page live poll when nothing changed (``/live/studies/{name}`` with ``If-None-Match``: 304);
- trials API page (``/api/studies/{name}/trials?sort=objective&order=desc&limit=50``), trial page.

Usage::

    python benchmarks/dashboard.py                       # SQLite in a temporary directory
    python benchmarks/dashboard.py --db postgresql+psycopg://postgres@127.0.0.1:5432/postgres   # a server
    python benchmarks/dashboard.py --sizes 100,1000      # fewer sizes
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import insert, select

from hpsearch.analysis.dashboard import create_app, open_readonly_store
from hpsearch.analysis.report.data import load_report_data
from hpsearch.store import NewStudy, open_store
from hpsearch.store.models import Trial, TrialAttempt, TrialMetric

SPACE = {
    "space": [
        {"class_name": "Float", "config": {"name": "lr", "conditions": [], "min_value": 1e-4, "max_value": 0.1,
                                           "step": None, "sampling": "log"}},
        {"class_name": "Int", "config": {"name": "units", "conditions": [], "min_value": 8, "max_value": 256,
                                         "step": 8, "sampling": "linear"}},
        {"class_name": "Choice", "config": {"name": "act", "conditions": [], "values": ["relu", "tanh", "gelu"],
                                            "ordered": False, "default": "relu"}},
    ],
    "values": {},
}  # fmt: skip


def fill(url: str, name: str, trials: int) -> None:
    """A RUNNING study of ``trials`` trials (all but the last few COMPLETED) with 3 epochs of 2 metrics each."""
    store = open_store(url, create=True)
    study, _ = store.create_study(
        NewStudy(name=name, objective_name="val_accuracy", direction="max", algorithm="random",
                 max_trials=trials, max_epochs=3, seed=0, spec={}, space=SPACE, source_path="/b.toml",
                 base_dir="/", artifact_root="/a")
    )  # fmt: skip
    rng = random.Random(trials)
    start = datetime(2026, 3, 1, 8, 0, 0)
    workers = [store.register_worker(f"{name}-w{i}", f"node-{i}", 100 + i, str(i)) for i in range(2)]
    rows, metrics, attempts = [], [], []
    for number in range(trials):
        params = {"lr": 10 ** rng.uniform(-4, -1), "units": rng.randrange(8, 264, 8), "act": rng.choice("abc")}
        params["act"] = {"a": "relu", "b": "tanh", "c": "gelu"}[params["act"]]
        quality = 0.95 - 0.05 * (math.log10(params["lr"]) + 2.5) ** 2 - (0.02 if params["act"] == "tanh" else 0.0)
        began = start + timedelta(seconds=30 * number / 2)
        done = number < trials - 2
        values = [quality - 0.3 / epoch + rng.gauss(0, 0.01) for epoch in (1, 2, 3)]
        rows.append(
            {"id": number + 1, "study_id": study.id, "number": number, "state": "COMPLETED" if done else "RUNNING",
             "params": params, "objective": max(values), "best_epoch": values.index(max(values)) + 1,
             "epochs_done": 3 if done else 1, "budget_epochs": 3, "seed": number,
             "worker_id": workers[number % 2], "started_at": began,
             "finished_at": began + timedelta(seconds=30) if done else None, "duration_seconds": 30.0 if done else None}
        )  # fmt: skip
        for epoch, value in enumerate(values, start=1):
            metrics.append({"trial_id": number + 1, "epoch": epoch, "name": "val_accuracy", "value": value})
        metrics += [{"trial_id": number + 1, "epoch": 1, "name": "loss", "value": 1 - values[0]}]
        attempts.append(
            {"trial_id": number + 1, "attempt": 1, "worker_id": workers[number % 2], "start_epoch": 0,
             "outcome": "COMPLETED" if done else None, "started_at": began,
             "ended_at": began + timedelta(seconds=30) if done else None}
        )  # fmt: skip
    with store.transaction() as connection:
        connection.execute(insert(Trial), rows)
        connection.execute(insert(TrialMetric), metrics)
        connection.execute(insert(TrialAttempt), attempts)
    store.engine.dispose()


@contextmanager
def scratch_database(server: str | None, directory: Path, trials: int) -> Iterator[str]:
    """The URL of a new, empty database for one size, removed afterwards: a SQLite file in ``directory``,
    or (``server``: a PostgreSQL URL) a database of a random name created on that server and dropped."""
    if server is None:
        yield f"sqlite:///{directory / f'bench_{trials}.db'}"
        return
    name = f"hpsearch_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def timed(client: Any, path: str, repeat: int, before: Any = None, **kwargs: Any) -> tuple[float, int]:
    """The median wall time of ``repeat`` requests, and the size of the last answer."""
    times = []
    size = 0
    for _ in range(repeat):
        if before is not None:
            before()
        began = time.perf_counter()
        response = client.get(path, **kwargs)
        times.append(time.perf_counter() - began)
        assert response.status_code in (200, 304), (path, response.status_code, response.text[:200])
        size = len(response.content)
    return statistics.median(times), size


def measure(url: str, trials: int, repeat: int) -> list[tuple[str, float, int]]:
    from starlette.testclient import TestClient

    name = f"bench_{trials}"
    fill(url, name, trials)
    store = open_readonly_store(url)
    app = create_app(store)
    board = app.state.dashboard
    results = []
    with TestClient(app) as client:
        with store.transaction() as connection:
            metric_rows = connection.scalar(select(TrialMetric.id).order_by(TrialMetric.id.desc()).limit(1))
        print(f"  {trials} trials, {metric_rows} metric rows", flush=True)
        timed(client, "/static/plotly.min.js", 1)  # load plotly once (not part of any page's time)
        results.append(("studies page", *timed(client, "/", repeat)))
        results.append(("studies API", *timed(client, "/api/studies", repeat)))
        timed(client, f"/studies/{name}", 1)  # starts the importance thread: let it finish first
        board.importances.wait(600)
        first_build = timed(client, f"/studies/{name}", repeat, board.cache.items.clear)
        results.append(("study page, first build (cache cleared)", *first_build))
        etag = client.get(f"/live/studies/{name}").headers["etag"]
        headers = {"If-None-Match": etag}
        poll = timed(client, f"/live/studies/{name}", repeat, headers=headers)
        results.append(("study live poll, unchanged (304)", *poll))
        page = f"/api/studies/{name}/trials?sort=objective&order=desc&limit=50&offset=100"
        results.append(("trials API page (50)", *timed(client, page, repeat)))
        results.append(("trial page", *timed(client, f"/studies/{name}/trials/{trials // 2}", repeat)))
        began = time.perf_counter()
        board.importances.compute(load_report_data(store, name))
        results.append(("importance (background thread, once)", time.perf_counter() - began, 0))
    store.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db",
        help="a PostgreSQL server URL: each size runs in a scratch database created there and dropped "
        "(default: SQLite files in a temporary directory)",
    )
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.db and not args.db.startswith("postgresql"):
        parser.error("--db takes a PostgreSQL server URL (without it, the benchmark runs on SQLite)")
    sizes = [int(s) for s in args.sizes.split(",")]
    table: dict[str, dict[int, tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for trials in sizes:
            with scratch_database(args.db, Path(tmp), trials) as url:
                for label, seconds, size in measure(url, trials, args.repeat):
                    table.setdefault(label, {})[trials] = (seconds, size)
    print(f"\nServer time (median of {args.repeat}; in-process, {(args.db and 'PostgreSQL') or 'SQLite'}):\n")
    print("| request | " + " | ".join(f"{n:,} trials" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for label, by_size in table.items():
        cells = [f"{by_size[n][0] * 1000:.0f} ms" + (f" ({by_size[n][1] / 1024:.0f} KiB)" if by_size[n][1] else "")
                 for n in sizes]  # fmt: skip
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
