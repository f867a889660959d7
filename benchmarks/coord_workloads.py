"""The workloads of benchmarks/coordination.py: the study, the synthetic objective, and the processes of each
run (hpsearch's real worker loop and coordinator; Optuna's workers on its RDB storage). Each process starts
at a barrier once imported and connected, and sends its rows and its CPU time back on a queue.

>>> round(objective({"lr": 10**-2.5, "units": 200, "dropout": 0.2, "act": "relu"}, epoch=3), 3)
0.1
"""

from __future__ import annotations

import math
import multiprocessing
import time
from typing import Any

EPOCHS = 3


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


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
