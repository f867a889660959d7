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
"""

from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing
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

PG_SERVER = os.environ.get("HPSEARCH_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
EPOCHS = 3
MARKS = (100, 1_000, 10_000)

# Four parameters as Keras Tuner's HyperParameters.get_config() stores them.
SPACE = {
    "space": [
        {
            "class_name": "Float",
            "config": {"name": "lr", "conditions": [], "min_value": 1e-4, "max_value": 1e-1, "step": None,
                       "sampling": "log"},
        },
        {
            "class_name": "Int",
            "config": {"name": "units", "conditions": [], "min_value": 16, "max_value": 512, "step": 16,
                       "sampling": "linear"},
        },
        {
            "class_name": "Float",
            "config": {"name": "dropout", "conditions": [], "min_value": 0.0, "max_value": 0.5, "step": None,
                       "sampling": "linear"},
        },
        {"class_name": "Choice", "config": {"name": "act", "conditions": [], "values": ["relu", "tanh", "gelu"]}},
    ]
}  # fmt: skip


def objective(params: dict[str, Any], epoch: int) -> float:
    """A synthetic val_loss: smooth in the parameters, falling with the epochs."""
    lr, units, dropout = float(params["lr"]), int(params["units"]), float(params["dropout"])
    act = {"relu": 0.0, "tanh": 0.05, "gelu": 0.02}[str(params["act"])]
    return (math.log10(lr) + 2.5) ** 2 + ((units - 200) / 300) ** 2 + (dropout - 0.2) ** 2 + act + 0.3 / epoch


# --- hpsearch ------------------------------------------------------------------------------------------


def create_study(url: str, trials: int, start_at: int = 0) -> str:
    from hpsearch.store import NewStudy, open_store

    store = open_store(url, create=True)
    search = {
        "algorithm": "tpe",
        "max_trials": trials,
        "max_epochs": EPOCHS,
        "max_retries": 1,
        "max_consecutive_failures": 3,
        "n_startup_trials": 10,
    }
    study, _ = store.create_study(
        NewStudy(
            name="bench",
            objective_name="val_loss",
            direction="min",
            algorithm="tpe",
            max_trials=trials,
            max_epochs=EPOCHS,
            seed=1,
            spec={"search": search, "run": {"lease_seconds": 60, "heartbeat_seconds": 10}},
            space=SPACE,
            source_path="/bench/bench.toml",
            base_dir="/bench",
            artifact_root="/bench/artifacts",
        )
    )
    if start_at:
        prefill_hpsearch(store, study.id, start_at)
    store.engine.dispose()
    return "bench"


def finished_params(count: int) -> list[dict[str, Any]]:
    """Parameters of the trials a --start-at run begins with (random, as a finished history would hold)."""
    import random

    from hpsearch.space import SearchSpace

    space, rng = SearchSpace(SPACE), random.Random(0)
    return [space.sample(rng) for _ in range(count)]


def prefill_hpsearch(store: Any, study_id: int, count: int) -> None:
    """``count`` finished trials with their params and curves, written in bulk: the run starts at trial ``count``."""
    import sqlalchemy as sa

    from hpsearch.store.models import Trial, TrialMetric, TrialParam, utcnow
    from hpsearch.store.repository import param_values

    now = utcnow()
    params = finished_params(count)
    trials = [
        {
            "study_id": study_id,
            "number": n,
            "state": "COMPLETED",
            "params": p,
            "objective": objective(p, EPOCHS),
            "objective_values": [objective(p, EPOCHS)],
            "best_epoch": EPOCHS,
            "epochs_done": EPOCHS,
            "budget_epochs": EPOCHS,
            "seed": 1 + n,
            "started_at": now,
            "finished_at": now,
        }
        for n, p in enumerate(params)
    ]
    with store.session() as session:
        session.execute(sa.insert(Trial), trials)
        ids = dict(session.execute(sa.select(Trial.number, Trial.id).where(Trial.study_id == study_id)).all())
        rows = [param_values(ids[n], name, value) for n, p in enumerate(params) for name, value in p.items()]
        session.execute(sa.insert(TrialParam), rows)
        metrics = [
            {"trial_id": ids[n], "epoch": e, "name": "val_loss", "value": objective(p, e), "recorded_at": now}
            for n, p in enumerate(params)
            for e in range(1, EPOCHS + 1)
        ]
        session.execute(sa.insert(TrialMetric), metrics)


def _timed(samples: list[tuple[Any, float]], method: Any, key: Any = None) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = method(*args, **kwargs)
        samples.append((result if key is None else key(result), time.perf_counter() - start))
        return result

    return wrapper


def hpsearch_worker(url: str, study: str, poll: float, queue: Any, ready: Any) -> None:
    """The real worker loop; ``run_trial`` reports EPOCHS epochs instead of training."""
    from hpsearch.execution.worker import Worker
    from hpsearch.store import Store, TrialState
    from hpsearch.store.db import make_engine

    store = Store(make_engine(url))
    claims: list[tuple[Any, float]] = []
    store.claim_next = _timed(claims, store.claim_next)  # type: ignore[method-assign]
    trials: list[dict[str, float]] = []

    class SimulatedWorker(Worker):
        def _process_context(self) -> Any:
            return None  # no fork server: nothing is trained

        def run_trial(self, claimed: Any) -> None:
            row = {"number": claimed.number, "claim": claims[-1][1], "start": time.time()}
            begin = time.perf_counter()
            self.store.heartbeat(claimed.trial_id, self.id, 60)
            reports = []
            for epoch in range(1, EPOCHS + 1):
                value = objective(claimed.params, epoch)
                start = time.perf_counter()
                self.store.record_epoch(claimed.trial_id, self.id, epoch, {"val_loss": value}, "val_loss", "min")
                reports.append(time.perf_counter() - start)
            self.store.finish(claimed.trial_id, self.id, TrialState.COMPLETED)
            row.update(worker=time.perf_counter() - begin + row["claim"], reports=reports, end=time.time())
            trials.append(row)

    worker = SimulatedWorker(store, study=study, exit_when_done=True, poll_seconds=poll)
    ready.wait()  # every process has imported and connected: the run measures coordination, not start-up
    cpu = time.process_time()
    worker.run()
    cpu = time.process_time() - cpu
    store.engine.dispose()
    queue.put(("worker", trials, cpu))


def hpsearch_coordinator(url: str, study: str, poll: float, prefetch: int, queue: Any, ready: Any) -> None:
    from hpsearch.control.coordinator import Coordinator
    from hpsearch.store import Store
    from hpsearch.store.db import make_engine
    from hpsearch.strategies import make_strategy

    store = Store(make_engine(url))
    queued: list[int] = []
    original_add = store.add_trials

    def add_trials(*args: Any, **kwargs: Any) -> list[int]:
        numbers = original_add(*args, **kwargs)
        queued.extend(numbers)
        return numbers

    store.add_trials = add_trials  # type: ignore[method-assign]
    coordinator = Coordinator(store, [study], poll_seconds=poll, prefetch=prefetch)
    make_strategy(store.study(study).spec["search"]).prepare()
    ticks: list[tuple[list[int], float]] = []
    original_tick = coordinator.tick

    def tick() -> Any:
        start = time.perf_counter()
        running = original_tick()
        ticks.append((list(queued), time.perf_counter() - start))
        queued.clear()
        return running

    coordinator.tick = tick  # type: ignore[method-assign]
    ready.wait()
    cpu = time.process_time()
    coordinator.run(until_done=True)  # the real loop, each tick timed
    cpu = time.process_time() - cpu
    store.engine.dispose()
    queue.put(("coordinator", ticks, cpu))


def run_hpsearch(
    url: str, trials: int, workers: int, poll: float, prefetch: int, worker_poll: float, start_at: int
) -> dict[str, Any]:
    study = create_study(url, trials, start_at)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ready = context.Barrier(workers + 1)
    processes = [context.Process(target=hpsearch_coordinator, args=(url, study, poll, prefetch, queue, ready))]
    processes += [
        context.Process(target=hpsearch_worker, args=(url, study, worker_poll, queue, ready)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    rows: list[dict[str, Any]] = []
    ticks: list[tuple[list[int], float]] = []
    cpu = {"worker": 0.0, "coordinator": 0.0}
    for _ in processes:
        kind, payload, seconds = queue.get()
        cpu[kind] += seconds
        if kind == "worker":
            rows += payload
        else:
            ticks = payload
    for process in processes:
        process.join()
    planning: dict[int, float] = {}
    for numbers, seconds in ticks:
        for number in numbers:
            planning[number] = seconds / len(numbers)
    for row in rows:
        row["coordination"] = row["worker"] + planning.get(row["number"], 0.0)
    return {
        "rows": rows,
        "claim_name": "claim",
        "note": (
            f"coordinator busy {sum(seconds for _, seconds in ticks):.1f}s in {len(ticks)} ticks; CPU per trial: "
            f"workers {ms(cpu['worker'] / len(rows))} ms, coordinator {ms(cpu['coordinator'] / len(rows))} ms"
        ),
    }


# --- Optuna --------------------------------------------------------------------------------------------


def optuna_sampler(seed: int) -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=10, multivariate=True, group=True, constant_liar=True
        )


def optuna_distributions() -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "units": IntDistribution(16, 512, step=16),
        "dropout": FloatDistribution(0.0, 0.5),
        "act": CategoricalDistribution(["relu", "tanh", "gelu"]),
    }


def optuna_worker(url: str, index: int, trials: int, counter: Any, queue: Any, ready: Any) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="bench", storage=url, sampler=optuna_sampler(index))
    ready.wait()
    cpu = time.process_time()
    rows = []
    while True:
        with counter.get_lock():
            if counter.value >= trials:
                break
            counter.value += 1
        row: dict[str, Any] = {"start": time.time()}
        start = time.perf_counter()
        trial = study.ask(optuna_distributions())
        row["claim"] = time.perf_counter() - start
        row["number"] = trial.number
        reports = []
        value = 0.0
        for epoch in range(1, EPOCHS + 1):
            value = objective(trial.params, epoch)
            begin = time.perf_counter()
            trial.report(value, epoch)
            reports.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        study.tell(trial, value)
        tell = time.perf_counter() - begin
        row.update(reports=reports, coordination=row["claim"] + sum(reports) + tell, end=time.time())
        rows.append(row)
    queue.put((rows, time.process_time() - cpu))


def run_optuna(url: str, trials: int, workers: int, start_at: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="bench", storage=url, direction="minimize")
    if start_at:
        distributions = optuna_distributions()
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=p,
                    distributions=distributions,
                    value=objective(p, EPOCHS),
                    intermediate_values={e: objective(p, e) for e in range(1, EPOCHS + 1)},
                )
                for p in finished_params(start_at)
            ]
        )
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    counter = context.Value("i", start_at)
    ready = context.Barrier(workers)
    processes = [
        context.Process(target=optuna_worker, args=(url, index, trials, counter, queue, ready))
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    rows: list[dict[str, Any]] = []
    cpu = 0.0
    for _ in processes:
        payload, seconds = queue.get()
        rows += payload
        cpu += seconds
    for process in processes:
        process.join()
    return {"rows": rows, "claim_name": "ask", "note": f"CPU per trial: workers {ms(cpu / len(rows))} ms"}


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


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


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
