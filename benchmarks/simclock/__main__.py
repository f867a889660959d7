"""Search quality with N workers on a simulated clock (issue 25).

    python benchmarks/simclock --seeds 10 --workers 1,4,16 --json /tmp/simclock.json
    python benchmarks/simclock --report-from /tmp/simclock.json

For each seed, problem (multi-fidelity Hartmann-6, counting ones: benchmarks/sq_problems.py; with
``--problems mnist_mlp`` the MNIST-5k MLP, really trained: simclock/real.py) and worker
count N: Keras Tuner's Hyperband oracle (max_epochs 27, factor 3, one sweep) serves N simulated workers
to its end; its wall time T is the horizon of every other method on that seed and N (equal wall time).
See clock.py for the event loop and the epoch durations, drivers*.py for how each library is driven,
report.py for the tables. One process: the machine is shared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: sq_problems, simclock
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from simclock.report import report
from simclock.runner import ANCHOR, METHODS, Run, installed, run_one
from sq_problems import CountingOnes, Hartmann6, MnistMLP, Problem

PROBLEMS: dict[str, type[Problem]] = {"hartmann6": Hartmann6, "counting_ones": CountingOnes, "mnist_mlp": MnistMLP}
# max_epochs R per problem: MNIST-5k's MLP at 9 epochs, as in the one-worker benchmark (real training).
EPOCHS = {"hartmann6": 27, "counting_ones": 27, "mnist_mlp": 9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="run seeds --first-seed .. --seeds")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--workers", default="1,4,16", help="comma-separated worker counts")
    parser.add_argument("--problems", default="hartmann6,counting_ones")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated (the anchor always runs)")
    parser.add_argument("--slow", default="kt bayesian,smac mf", help="methods run on the first --slow-seeds only")
    parser.add_argument("--slow-seeds", type=int, default=5, help="the last seed the --slow methods run on")
    parser.add_argument("--minutes", type=float, default=math.inf, help="start no new seed after this long")
    parser.add_argument(
        "--budgets",
        default="1",
        help="comma-separated horizons as multiples of T (the anchor's wall time); 1: equal wall time",
    )
    parser.add_argument("--json", type=Path, help="write every run here (after each run)")
    parser.add_argument("--report-from", type=Path, nargs="+", help="print the tables of saved runs (merged) and exit")
    args = parser.parse_args(argv)
    describe = {name: cls.describe(EPOCHS[name]) for name, cls in PROBLEMS.items()}
    if args.report_from:
        runs = []
        for path in args.report_from:
            saved = json.loads(path.read_text())
            print(saved["header"])
            runs += [Run(**r) for r in saved["runs"]]
        print("\n".join(report(runs, describe)))
        return 0
    warnings.filterwarnings("ignore")
    try:
        workers = [int(w) for w in args.workers.split(",")]
        budgets = [float(b) for b in args.budgets.split(",")]
        if any(not b > 0 for b in budgets):
            raise ValueError("budgets must be > 0")
        problems = [PROBLEMS[p](EPOCHS[p]) for p in args.problems.split(",") if p]  # type: ignore[call-arg]
        methods = [m for m in args.methods.split(",") if m]
        unknown = [m for m in methods if m not in METHODS]
        if unknown or any(w < 1 for w in workers):
            raise ValueError(f"unknown methods {unknown}" if unknown else "worker counts must be >= 1")
    except (KeyError, ValueError) as exc:
        print(f"simclock: bad argument: {exc}", file=sys.stderr)
        return 2
    slow = set(args.slow.split(","))
    missing = [m for m in methods if not installed(m)]
    if missing:
        print(f"not installed, left out: {', '.join(missing)} (pip install dehb smac)", file=sys.stderr)
    methods = [m for m in methods if m != ANCHOR and installed(m)]
    header = (
        f"simclock, {datetime.date.today()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"command: python benchmarks/simclock {shlex.join(sys.argv[1:] if argv is None else argv)}"
    )
    print(header, flush=True)
    runs: list[Run] = []

    def save() -> None:  # after every run: a run stopped by hand keeps what it finished
        if args.json:
            args.json.write_text(json.dumps({"header": header, "runs": [asdict(r) for r in runs]}))

    started = time.perf_counter()
    for seed in range(args.first_seed, args.seeds + 1):
        if (time.perf_counter() - started) / 60 > args.minutes:
            print(f"--minutes reached: stopped after seed {seed - 1}", file=sys.stderr)
            break
        for problem in problems:
            for n in workers:
                anchor = run_one(ANCHOR, problem, n, seed, math.inf)
                runs.append(anchor)
                save()
                for budget in budgets:
                    for method in methods:
                        if method in slow and seed > args.slow_seeds:
                            continue
                        runs.append(run_one(method, problem, n, seed, anchor.end * budget, budget))
                        save()
        elapsed = time.perf_counter() - started
        print(f"seed {seed} done, {elapsed / 60:.1f} min", file=sys.stderr, flush=True)
    print("\n".join(report(runs, describe)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
