"""GPU-busy share over a study of small CNN trials, and what raises it. Needs an NVIDIA GPU; skips otherwise.

    python benchmarks/gpu_utilization.py                          # every variant, 8 trials x 3 epochs each
    python benchmarks/gpu_utilization.py --variants baseline,all  # a subset

Each variant is a whole hpsearch study (benchmarks/gpu_cnn.py: a small CNN on MNIST-5k tiled to 28k images,
random search) run by ``hpsearch coordinator`` and one ``hpsearch worker --gpu 0 --slots K`` process on SQLite,
while ``nvidia-smi`` samples utilization.gpu (the share of time a kernel was running) every 200 ms. The busy share
is the mean of the samples from the first trial's start to the last trial's end (both read from the
database), so the worker's start-up is not counted; trial start-up, building, checkpoints and reports are.

Variants (default: K = 1, 2, 4, 8 slots, each without and with mixed precision): ``K-slots`` (K trials at once
on GPU 0; the worker sets memory growth / a 0.9/K memory cap per backend so they fit together);
``K-slots-mixed`` (and ``[fit] mixed_precision = true``); opt-in: ``xla`` (1 slot, ``[fit] jit_compile =
true``), ``prefetch`` (1 slot, tf.data cache/shuffle/prefetch and steps_per_execution=32), ``all`` (4 slots,
prefetch, mixed precision and XLA). Without an NVIDIA GPU it prints one line saying it skipped, and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# name -> (slots of the one worker on GPU 0, [fit] mixed_precision, [fit] jit_compile, HPSEARCH_BENCH_GPU_VARIANT)
VARIANTS: dict[str, tuple[int, bool, bool, str]] = {
    **{f"{k}-slots": (k, False, False, "") for k in (1, 2, 4, 8)},
    **{f"{k}-slots-mixed": (k, True, False, "") for k in (1, 2, 4, 8)},
    "xla": (1, False, True, ""),
    "prefetch": (1, False, False, "prefetch"),
    "all": (4, True, True, "prefetch"),
}
DEFAULT = [name for name in VARIANTS if name.split("-")[0].isdigit()]

STUDY = """
[study]
name = "gpu_{name}"
hypermodel = "{here}/gpu_cnn.py:SmallCNN"
data = "{here}/gpu_cnn.py:load_data"
objective = "val_accuracy"
seed = 11

[search]
algorithm = "random"
max_trials = {trials}
max_epochs = {epochs}

[fit]
batch_size = 256
mixed_precision = {mixed}
jit_compile = {xla}
"""


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi lists, or [] (no driver, no device)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]


class Sampler:
    """utilization.gpu of GPU 0 every 200 ms, with the wall-clock time of each sample."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.process = subprocess.Popen(
            ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.samples.append((time.time(), float(line.strip())))
            except ValueError:
                continue

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        self.thread.join(timeout=5)

    def mean(self, start: float, end: float) -> float:
        window = [value for t, value in self.samples if start <= t <= end]
        return sum(window) / len(window) if window else float("nan")


def run_variant(name: str, trials: int, epochs: int, workdir: Path) -> dict[str, float]:
    slots, mixed, xla, variant = VARIANTS[name]
    study_file = workdir / f"{name}.toml"
    flags = {"mixed": str(mixed).lower(), "xla": str(xla).lower()}
    study_file.write_text(STUDY.format(name=name, here=HERE, trials=trials, epochs=epochs, **flags))
    db = workdir / f"{name}.db"
    env = {
        **os.environ,
        "HPSEARCH_DB": f"sqlite:///{db}",
        "HPSEARCH_ARTIFACTS": str(workdir / "artifacts"),
        "HPSEARCH_BENCH_GPU_VARIANT": variant,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    hpsearch = [sys.executable, "-m", "hpsearch"]
    # Creating the study builds the model once: on the CPU, so that no process but the workers holds the GPU.
    subprocess.run([*hpsearch, "study", "create", str(study_file)], env={**env, "CUDA_VISIBLE_DEVICES": ""}, check=True)
    log = (workdir / f"{name}.log").open("ab")
    sampler = Sampler()
    processes = [
        subprocess.Popen([*hpsearch, "coordinator", "--study", f"gpu_{name}", "--exit-when-done"], env=env, stdout=log,
                         stderr=subprocess.STDOUT)
    ]  # fmt: skip
    # One worker, K slots: the worker itself sets how they share the GPU's memory (hpsearch.execution.gpu).
    worker = [*hpsearch, "worker", "--gpu", "0", "--slots", str(slots), "--study", f"gpu_{name}", "--exit-when-done"]
    processes.append(subprocess.Popen(worker, env=env, stdout=log, stderr=subprocess.STDOUT))
    for process in processes:
        process.wait()
    sampler.stop()
    with sqlite3.connect(db) as connection:
        first, last, done = connection.execute(
            "SELECT MIN(started_at), MAX(finished_at), SUM(state = 'COMPLETED') FROM trials"
        ).fetchone()
    utc = datetime.UTC
    start = datetime.datetime.fromisoformat(first).replace(tzinfo=utc).timestamp()
    end = datetime.datetime.fromisoformat(last).replace(tzinfo=utc).timestamp()
    busy = sampler.mean(start, end)
    return {"slots": slots, "mixed": mixed, "busy": busy, "wall": end - start, "completed": done or 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variants", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    gpus = gpu_names()
    if not gpus:
        print(
            "gpu_utilization: skipped: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU). "
            "Run it on a GPU node: python benchmarks/gpu_utilization.py"
        )
        return
    print(f"# GPU utilization benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {gpus[0]}")
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"{args.trials} trials x {args.epochs} epochs per variant; busy = mean nvidia-smi utilization.gpu")
    columns = ["variant", "slots on GPU 0", "mixed precision", "trials completed", "wall s (first to last trial)"]
    print("\n| " + " | ".join([*columns, "trials/hour", "GPU busy"]) + " |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="hpsearch-gpu-") as directory:
        for name in names:
            result = run_variant(name, args.trials, args.epochs, Path(directory))
            per_hour = 3600 * result["completed"] / result["wall"] if result["wall"] > 0 else 0.0
            cells = [name, result["slots"], "yes" if result["mixed"] else "no", result["completed"]]
            cells += [f"{result['wall']:.1f}", f"{per_hour:.0f}"]
            cells.append(f"{result['busy']:.0f}%")
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print("\ntarget: >= 90% busy on one H100")


if __name__ == "__main__":
    main()
