"""Coordination cost: how fast one coordinator and one database hand out trials and take their reports.

    python benchmarks/coordination.py                       # 10,000 TPE trials x 16 workers, PostgreSQL + SQLite
    python benchmarks/coordination.py --trials 500          # a quick run

Simulated workers run hpsearch's real worker loop (``hpsearch.execution.worker.Worker.run``: claim, heartbeat, the
report of every epoch, finish) against the real coordinator (TPE sampler); only the training is left out:
each trial reports 3 epochs of a synthetic objective at once. The same workload then runs through Optuna's
RDB storage on the same PostgreSQL server in the same invocation: each of the same number of worker
processes loops ``ask``, 3 x ``trial.report``, ``tell`` with Optuna's TPE (the same settings hpsearch uses).
Every process (workers, coordinator) imports its libraries and connects first; all start together at a
barrier, so the figures measure coordination, not start-up.

Printed per run: end-to-end trials/s; p50 and p99 latency of a claim (Optuna: ask) and of one epoch report;
and the per-trial coordination time around trials 100, 1,000 and 10,000 (median over the 100 trials around
each): hpsearch = the coordinator's time planning the trial (a tick's time shared by the trials it queued)
+ claim + heartbeat + 3 reports + finish; Optuna = ask + 3 reports + tell. Each process's CPU time from the
barrier to its end (``time.process_time()``) is printed per trial: workers together, and the coordinator.
The workloads (the study, the objective, each run's processes) are in ``benchmarks/coord_workloads.py``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# The workloads live beside this file (spawned processes find it: they inherit this sys.path).
from coord_workloads import EPOCHS, SPACE, finished_params, ms, objective, run_hpsearch, run_optuna  # noqa: E402

PG_SERVER = os.environ.get("HPSEARCH_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARKS = (100, 1_000, 10_000)

# --- the coordinator's planning alone -------------------------------------------------------------------


def planning_cost(sizes: tuple[int, ...] = MARKS, batch: int = 18, repeats: int = 3) -> dict[int, float]:
    """Seconds per planned trial of the TPE strategy on an in-memory history of ``size`` finished trials:
    the coordinator's CPU per trial without the database (best of ``repeats``)."""
    from hpsearch.space import SearchSpace
    from hpsearch.strategies import StudyContext, TrialView, make_strategy

    context = StudyContext(space=SearchSpace(SPACE), direction="min", seed=1, max_trials=None, max_epochs=EPOCHS)
    strategy = make_strategy({"algorithm": "tpe", "n_startup_trials": 10})
    params = finished_params(max(sizes))
    history = [
        TrialView(
            number=n,
            state="COMPLETED",
            params=p,
            objective=objective(p, EPOCHS),
            best_epoch=EPOCHS,
            epochs_done=EPOCHS,
            budget_epochs=EPOCHS,
        )
        for n, p in enumerate(params)
    ]
    strategy.plan(context, history[:50], 1)  # imports
    cost = {}
    for size in sizes:
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            strategy.plan(context, history[:size], batch)
            best = min(best, time.perf_counter() - start)
        cost[size] = best / batch
    return cost


# --- databases, statistics, report ----------------------------------------------------------------------


class PostgresDatabase:
    """A fresh database on the server for one run, dropped afterwards."""

    def __init__(self) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        self.name = f"hpsearch_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        with self.admin.connect() as connection:
            connection.execute(self.sa.text(f'CREATE DATABASE "{self.name}"'))
        url = self.sa.engine.make_url(PG_SERVER).set(database=self.name)
        return url.render_as_string(hide_password=False)

    def __exit__(self, *_: object) -> None:
        with self.admin.connect() as connection:
            connection.execute(self.sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def around(rows: list[dict[str, Any]], mark: int) -> float | None:
    """Median coordination time of the 100 trials around trial number ``mark`` (clipped to the run)."""
    numbers = sorted(row["number"] for row in rows)
    if not numbers or mark > numbers[-1] + 1 or mark < numbers[0]:
        return None
    low, high = max(0, mark - 50), min(numbers[-1] + 1, mark + 50)
    if high - low < 100:
        low = max(0, high - 100)
    window = [row["coordination"] for row in rows if low <= row["number"] < high]
    return statistics.median(window) if window else None


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    wall = max(row["end"] for row in rows) - min(row["start"] for row in rows)
    claims = [row["claim"] for row in rows]
    reports = [seconds for row in rows for seconds in row["reports"]]
    return {
        "trials": len(rows),
        "wall": wall,
        "rate": len(rows) / wall,
        "claim_p50": percentile(claims, 0.5),
        "claim_p99": percentile(claims, 0.99),
        "report_p50": percentile(reports, 0.5),
        "report_p99": percentile(reports, 0.99),
        "marks": {mark: around(rows, mark) for mark in MARKS},
    }


def print_table(summaries: dict[str, dict[str, Any]], trials: int) -> None:
    marks = [m for m in MARKS if m <= trials]
    head = ["run", "trials", "wall s", "trials/s", "claim|ask p50 ms", "p99 ms", "report p50 ms", "p99 ms"]
    head += [f"coord/trial @{m} ms" for m in marks]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, s in summaries.items():
        cells = [name, str(s["trials"]), f"{s['wall']:.1f}", f"{s['rate']:.1f}"]
        cells += [ms(s["claim_p50"]), ms(s["claim_p99"]), ms(s["report_p50"]), ms(s["report_p99"])]
        cells += [ms(s["marks"][m]) for m in marks]
        print("| " + " | ".join(cells) + " |")


def header(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(f"# coordination benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    run = args.trials - args.start_at
    print(f"{run} trials (numbers {args.start_at}..{args.trials - 1}) x {EPOCHS} epoch reports, {args.workers} workers")
    print(f"TPE; coordinator poll {args.poll}s, prefetch {args.prefetch}; worker poll {args.worker_poll}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--start-at",
        type=int,
        default=0,
        help="begin with this many finished trials written in bulk (measures the cost at trial N without running N)",
    )
    parser.add_argument("--optuna-trials", type=int, help="trials for Optuna (default: --trials)")
    parser.add_argument("--poll", type=float, default=0.02, help="coordinator sleep between ticks (s)")
    parser.add_argument("--worker-poll", type=float, default=0.1, help="worker sleep after an empty claim (s)")
    parser.add_argument("--prefetch", type=int, default=16, help="trials queued beyond one per live worker")
    parser.add_argument(
        "--skip", default="", help="comma-separated runs to leave out: planning,postgresql,sqlite,optuna"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    header(args)
    if "planning" not in skip:
        cost = planning_cost()
        cells = ", ".join(f"{ms(seconds)} ms at {size} finished trials" for size, seconds in cost.items())
        print(f"coordinator planning alone (TPE, in memory, best of 3, batches of 18): {cells}", flush=True)
    summaries: dict[str, dict[str, Any]] = {}
    extra: dict[str, str] = {}
    if "postgresql" not in skip:
        with PostgresDatabase() as url:
            result = run_hpsearch(
                url, args.trials, args.workers, args.poll, args.prefetch, args.worker_poll, args.start_at
            )
        summaries["hpsearch, PostgreSQL"] = summarise(result)
        extra["hpsearch, PostgreSQL"] = result["note"]
        print(f"done: hpsearch on PostgreSQL ({extra['hpsearch, PostgreSQL']})", flush=True)
    if "sqlite" not in skip:
        with tempfile.TemporaryDirectory() as directory:
            result = run_hpsearch(
                f"sqlite:///{directory}/bench.db",
                args.trials,
                args.workers,
                args.poll,
                args.prefetch,
                args.worker_poll,
                args.start_at,
            )
        summaries["hpsearch, SQLite"] = summarise(result)
        extra["hpsearch, SQLite"] = result["note"]
        print(f"done: hpsearch on SQLite ({extra['hpsearch, SQLite']})", flush=True)
    if "optuna" not in skip:
        with PostgresDatabase() as url:
            result = run_optuna(url, args.optuna_trials or args.trials, args.workers, args.start_at)
        summaries["Optuna RDB, PostgreSQL"] = summarise(result)
        extra["Optuna RDB, PostgreSQL"] = result["note"]
        print(f"done: Optuna on PostgreSQL ({result['note']})", flush=True)
    print()
    print_table(summaries, args.trials)
    print()
    for name, text in extra.items():
        print(f"- {name}: {text}")
    ours, theirs = summaries.get("hpsearch, PostgreSQL"), summaries.get("Optuna RDB, PostgreSQL")
    if ours and theirs:
        print(
            f"- trials/s, hpsearch / Optuna on the same PostgreSQL: {ours['rate'] / theirs['rate']:.1f}x "
            f"(target >= 10x; {ours['trials']} against {theirs['trials']} trials)"
        )
    for name, s in summaries.items():
        first = s["marks"].get(100)
        ratios = [f"@{m}: {s['marks'][m] / first:.2f}x" for m in MARKS[1:] if first and s["marks"].get(m)]
        if ratios:
            print(f"- {name}: coordination per trial relative to trial 100, {', '.join(ratios)} (target <= 1.5x)")


if __name__ == "__main__":
    main()
