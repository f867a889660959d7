"""Worker overhead: the share of wall time a trial spends outside training, hpsearch's worker against Keras Tuner.

    python benchmarks/worker_overhead.py                  # 20 one-epoch trials of the MNIST-5k MLP each
    python benchmarks/worker_overhead.py --trials 5       # a quick run

Both run the same hypermodel (benchmarks/wo_hypermodel.py: studies/mnist_mlp.py's MLP, batch 128, random
search) on the same data, one trial at a time, in one invocation. The hypermodel logs wall-clock events
(build start/end, fit start, train begin, epoch end) and the benchmark wraps hpsearch's claim and finish, so
the split below is measured, not estimated:

- training: Keras ``fit`` from ``on_train_begin`` to the last ``on_epoch_end`` (graph tracing included),
  less the time between one epoch's end and the next one's begin (checkpoint and report, counted apart);
- everything else is overhead: hpsearch = claim, child start (task, fork, imports), build, data (open the
  memory-mapped arrays, check the model), fit set-up, checkpoint + report + finish, the loop between trials,
  and the first trial's one-time data load; Keras Tuner = the same phases in its own process (oracle,
  build, fit set-up, its checkpoint and oracle update after the epoch, the loop).

Wall time starts before the data are loaded (both) and ends when the last trial is recorded. hpsearch's fork
server start (importing keras once per worker, like the import before Keras Tuner runs) is printed apart.
The coordinator queued the trials beforehand (it runs on another node; benchmarks/coordination.py measures it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench_study import write_study  # benchmarks/ is on the path of a script run from it

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def per_trial(events: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Group the hypermodel's events into trials (one trial at a time: each starts with build_start)."""
    trials: list[dict[str, float]] = []
    for event in events:
        if event["event"] == "build_start":
            trials.append({"between_epochs": 0.0})
        if trials:
            name = event["event"]
            if name == "epoch_begin" and "epoch_end" in trials[-1]:
                # From one epoch's end to the next one's begin: the callbacks after the timer (checkpoint,
                # report; Keras Tuner's checkpoint and oracle update) between two epochs of one fit.
                trials[-1]["between_epochs"] += event["t"] - trials[-1]["epoch_end"]
            trials[-1][name] = event["t"]  # epoch_end keeps the last epoch's
    return trials


def run_hpsearch(workdir: Path, trials: int, epochs: int, checkpoint_seconds: float) -> dict[str, Any]:
    from hpsearch.api import create_study
    from hpsearch.control.coordinator import Coordinator
    from hpsearch.execution.worker import Worker
    from hpsearch.store import open_store

    timings = workdir / "hpsearch.jsonl"
    os.environ["HPSEARCH_BENCH_TIMINGS"] = str(timings)
    workdir.mkdir()
    path = write_study(
        workdir / "overhead.toml", name="overhead", module=HERE / "wo_hypermodel.py", hypermodel="TimedMLP",
        data="load_data", trials=trials, epochs=epochs, batch_size=128,
        run={"workers": 1, "checkpoint_seconds": checkpoint_seconds},
    )  # fmt: skip
    store = open_store(f"sqlite:///{workdir / 'hpsearch.db'}", create=True)
    study = create_study(path, store=store, artifacts=workdir / "artifacts").record
    Coordinator(store, [study.name]).step(study, target_queued=trials)  # every trial queued up front
    timings.unlink(missing_ok=True)  # create_study built the model once: not a trial

    claims: list[tuple[float, float]] = []
    finishes: list[float] = []
    first_load: list[float] = []
    claim, finish = store.claim_next, store.finish

    def timed_claim(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = claim(*args, **kwargs)
        if result is not None:
            claims.append((start, time.time()))
        return result

    def timed_finish(*args: Any, **kwargs: Any) -> Any:
        result = finish(*args, **kwargs)
        finishes.append(time.time())
        return result

    store.claim_next, store.finish = timed_claim, timed_finish  # type: ignore[method-assign]
    worker = Worker(store, study=study.name, max_trials=trials)
    load_study = worker._study

    def timed_study(study_id: int) -> Any:
        fresh = study_id not in worker.cache
        start = time.time()
        result = load_study(study_id)
        if fresh:
            first_load.append(time.time() - start)
        return result

    worker._study = timed_study  # type: ignore[method-assign]
    start = time.time()
    worker._process_context()
    fork_server = time.time() - start
    start = time.time()
    worker.run()
    wall = time.time() - start
    rows = per_trial(read_events(timings))
    assert len(rows) == len(claims) == len(finishes) == trials, (len(rows), len(claims), len(finishes))
    phases: dict[str, float] = defaultdict(float)
    for (claim_start, claim_end), row, finished in zip(claims, rows, finishes, strict=True):
        phases["claim"] += claim_end - claim_start
        phases["child start (task, fork, imports)"] += row["build_start"] - claim_end
        phases["build"] += row["build_end"] - row["build_start"]
        phases["data + check (memory-mapped)"] += row["fit_start"] - row["build_end"]
        phases["fit set-up"] += row["train_begin"] - row["fit_start"]
        phases["training"] += row["epoch_end"] - row["train_begin"] - row["between_epochs"]
        phases["checkpoint + report between epochs"] += row["between_epochs"]
        phases["checkpoint + report + finish"] += finished - row["epoch_end"]
    phases["first trial's data load (once)"] = first_load[0] if first_load else 0.0
    phases["child start (task, fork, imports)"] -= phases["first trial's data load (once)"]
    phases["between trials"] = wall - sum(phases.values())
    store.engine.dispose()
    return {"wall": wall, "phases": dict(phases), "extra": f"fork server start (once per worker): {fork_server:.2f}s"}


def run_keras_tuner(workdir: Path, trials: int, epochs: int) -> dict[str, Any]:
    import keras_tuner as kt

    workdir.mkdir()
    timings = workdir / "kt.jsonl"
    os.environ["HPSEARCH_BENCH_TIMINGS"] = str(timings)
    sys.path.insert(0, str(HERE))
    from wo_hypermodel import TimedMLP, load_data

    start = time.time()
    data = load_data()
    loaded = time.time() - start
    (x, y), validation = data["train"], data["validation"]
    tuner = kt.RandomSearch(
        TimedMLP(),
        objective="val_accuracy",
        max_trials=trials,
        seed=3,
        directory=str(workdir),
        project_name="kt",
        overwrite=True,
    )
    tuner.search(x, y, validation_data=validation, epochs=epochs, batch_size=128, verbose=0)
    wall = time.time() - start
    built = per_trial(read_events(timings))
    # Keras Tuner builds the model once before the first trial to discover the space (hpsearch does that at
    # study create, outside the timed run): left out of its wall time too.
    discovery = sum(row["build_end"] - row["build_start"] for row in built if "fit_start" not in row)
    wall -= discovery
    rows = [row for row in built if "fit_start" in row]
    assert len(rows) == trials, len(rows)
    phases: dict[str, float] = defaultdict(float)
    previous_end = start + loaded + discovery
    phases["data load (once)"] = loaded
    for row in rows:
        phases["oracle + loop before build"] += row["build_start"] - previous_end
        phases["build"] += row["build_end"] - row["build_start"]
        phases["fit set-up"] += row["train_begin"] - row["fit_start"] + row["fit_start"] - row["build_end"]
        phases["training"] += row["epoch_end"] - row["train_begin"] - row["between_epochs"]
        phases["checkpoint + oracle update between epochs"] += row["between_epochs"]
        phases["checkpoint + oracle update (after the last epoch)"] += row["fit_end"] - row["epoch_end"]
        previous_end = row["fit_end"]
    phases["after the last trial"] = start + wall + discovery - previous_end
    extra = f"space discovery build before the first trial, left out: {discovery:.2f}s"
    return {"wall": wall, "phases": dict(phases), "extra": extra}


def report(name: str, result: dict[str, Any], trials: int) -> float:
    wall, phases = result["wall"], result["phases"]
    share = 1 - phases["training"] / wall
    print(f"\n{name}: wall {wall:.1f}s for {trials} trials, non-training share {share:.1%} (target <= 5%)")
    if result["extra"]:
        print(f"  ({result['extra']})")
    print("| phase | total s | per trial ms | share of wall |")
    print("|---|---|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds:.2f} | {seconds / trials * 1000:.0f} | {seconds / wall:.1%} |")
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=0.0,
        help="hpsearch's [run] checkpoint_seconds (0, the default: a checkpoint after every epoch)",
    )
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"# worker overhead benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f}")
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"{args.trials} trials x {args.epochs} epoch(s), MNIST-5k MLP (studies/mnist_mlp.py), batch 128, CPU")
    print(f"hpsearch [run] checkpoint_seconds = {args.checkpoint_seconds:g}")
    with tempfile.TemporaryDirectory(prefix="hpsearch-overhead-") as directory:
        ours = run_hpsearch(Path(directory) / "hp", args.trials, args.epochs, args.checkpoint_seconds)
        theirs = run_keras_tuner(Path(directory) / "kt", args.trials, args.epochs)
    share_ours = report("hpsearch worker (fork server child per trial, SQLite)", ours, args.trials)
    share_theirs = report("Keras Tuner RandomSearch (in process)", theirs, args.trials)
    print(f"\nnon-training share: hpsearch {share_ours:.1%}, Keras Tuner {share_theirs:.1%}")


if __name__ == "__main__":
    main()
