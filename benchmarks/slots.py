"""Trials per hour of one ``hpsearch worker --slots K`` on this machine's CPUs, for K = 1 and K = 2.

    python benchmarks/slots.py                    # K = 1 and 2, 12 trials x 3 epochs each
    python benchmarks/slots.py --slots 1,2,4 --trials 16

Each K is a whole study (a small MLP on a synthetic 20-feature, 4,000-row problem; random search) run on a
fresh SQLite database by ``hpsearch coordinator`` and one ``hpsearch worker --slots K`` process. Trials per
hour = completed trials / (last trial's end - first trial's start), both read from the database, so the
worker's start-up (importing keras) is not counted; each trial's own start-up, build, checkpoints and reports
are. It measures the mechanism on CPUs: K trial processes share the cores (and TensorFlow's thread pools),
so the gain is what overlapping one trial's Python, start-up and I/O with another's compute buys.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_study import write_study  # benchmarks/ is on the path of a script run from it

REPO = Path(__file__).resolve().parent.parent

MODULE = """
import numpy as np


def load_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 20)).astype("float32")
    y = (x[:, :5].sum(axis=1) + 0.5 * x[:, 5] * x[:, 6] > 0).astype("int64")
    return {"train": (x[:4000], y[:4000]), "validation": (x[4000:], y[4000:])}


def build(hp):
    import keras

    model = keras.Sequential([keras.Input((20,))])
    for _ in range(hp.Int("layers", 1, 3)):
        model.add(keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu"))
    model.add(keras.layers.Dense(2, activation="softmax"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""


def run(slots: int, trials: int, epochs: int, workdir: Path) -> tuple[int, float]:
    """(completed trials, seconds from the first trial's start to the last one's end) for one K."""
    (workdir / "mlp.py").write_text(MODULE)
    study_file = write_study(
        workdir / f"slots{slots}.toml", name=f"slots{slots}", module=workdir / "mlp.py", hypermodel="build",
        data="load_data", trials=trials, epochs=epochs, batch_size=32,
    )  # fmt: skip
    db = workdir / f"slots{slots}.db"
    env = {
        **os.environ,
        "HPSEARCH_DB": f"sqlite:///{db}",
        "HPSEARCH_ARTIFACTS": str(workdir / "artifacts"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    hpsearch = [sys.executable, "-m", "hpsearch"]
    name = f"slots{slots}"
    subprocess.run([*hpsearch, "study", "create", str(study_file)], env=env, check=True, capture_output=True)
    with (workdir / f"{name}.log").open("ab") as log:
        processes = [
            subprocess.Popen([*hpsearch, "coordinator", "--study", name, "--exit-when-done"], env=env, stdout=log,
                             stderr=subprocess.STDOUT),
            subprocess.Popen([*hpsearch, "worker", "--slots", str(slots), "--study", name, "--exit-when-done"],
                             env=env, stdout=log, stderr=subprocess.STDOUT),
        ]  # fmt: skip
        for process in processes:
            process.wait()
    with sqlite3.connect(db) as connection:
        first, last, done = connection.execute(
            "SELECT MIN(started_at), MAX(finished_at), SUM(state = 'COMPLETED') FROM trials"
        ).fetchone()
    start, end = (datetime.datetime.fromisoformat(t).timestamp() for t in (first, last))
    return int(done or 0), end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", default="1,2", help="comma-separated K values")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    counts = [int(k) for k in args.slots.split(",") if k]
    print(f"# hpsearch worker --slots K on CPU, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"{args.trials} trials x {args.epochs} epochs per K (small MLP, 4,000 rows, batch 32)")
    print("\n| slots (K) | trials completed | wall s (first trial start to last end) | trials/hour |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="hpsearch-slots-") as directory:
        for k in counts:
            workdir = Path(directory) / f"k{k}"
            workdir.mkdir()
            done, wall = run(k, args.trials, args.epochs, workdir)
            print(f"| {k} | {done} | {wall:.1f} | {3600 * done / wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
