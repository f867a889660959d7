"""Search quality at equal epoch budget: hpsearch's strategies against Keras Tuner and Optuna.

    python benchmarks/search_quality.py                 # synthetic problems only (about 2 minutes on 2 cores)
    python benchmarks/search_quality.py --mnist         # plus the MNIST-5k MLP with real training

Problems (see sq_problems.py): multi-fidelity Hartmann-6 and counting ones (no training; an epoch is a
fidelity step) and the MNIST-5k MLP of studies/mnist_mlp.py (real keras training, fewer seeds).

Budget: B = the epochs Keras Tuner's Hyperband spends for max_epochs R, factor 3 and ``--iterations``
brackets sweeps; a promoted trial costs only its extra epochs. Every method gets B: full-budget methods run
B // R trials of R epochs, ASHA and Optuna run until B is spent.

Score: after every trial trained to R epochs, the incumbent is the configuration with the best *observed*
objective among those trials; the anytime curve is the score of the incumbent (synthetic: its exact value
at full fidelity, noise free; MNIST: its observed val_accuracy) against the epochs spent so far.

Per problem it prints the budget each method needs to reach Keras Tuner Hyperband's final score (same seed)
as a fraction of B, the final score at B, the anytime curves (median [q1, q3] over seeds) and a verdict.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sq_methods import RunResult, methods, run_one
from sq_problems import CountingOnes, Hartmann6, MnistMLP, Problem

KT_HYPERBAND = "kt hyperband"
OPTUNA = "optuna tpe+hyperband"
FRACTIONS = (0.1, 0.25, 1 / 3, 0.5, 1.0)


def keras_tuner_hyperband_budget(max_epochs: int, iterations: int, factor: int = 3) -> int:
    """Epochs Keras Tuner's Hyperband spends (a promoted trial trains epochs - initial_epoch)."""
    import tempfile

    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("score", "max"),
        max_epochs=max_epochs,
        factor=factor,
        hyperband_iterations=iterations,
        seed=0,
        hyperparameters=hp,
    )
    spent = 0
    with tempfile.TemporaryDirectory() as tmp:
        oracle._set_project_dir(tmp, "kt")
        oracle.verbose = 0
        while (trial := oracle.create_trial("t")).status != "STOPPED":
            values = trial.hyperparameters.values
            spent += values["tuner/epochs"] - values["tuner/initial_epoch"]
            oracle.update_trial(trial.trial_id, {"score": 0.5})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
    return spent


# ---------------------------------------------------------------------------------------------- running


_PROBLEMS: dict[tuple[str, int], Problem] = {}


def _problem(name: str, max_epochs: int) -> Problem:
    key = (name, max_epochs)
    if key not in _PROBLEMS:
        classes: dict[str, type[Problem]] = {
            "hartmann6": Hartmann6,
            "counting_ones": CountingOnes,
            "mnist_mlp": MnistMLP,
        }
        _PROBLEMS[key] = classes[name](max_epochs)  # type: ignore[call-arg]
    return _PROBLEMS[key]


def _quiet() -> None:
    warnings.filterwarnings("ignore")  # sklearn's GP convergence warnings (Keras Tuner), Optuna's experimental ones
    import logging

    logging.getLogger("optuna").setLevel(logging.ERROR)


def _worker_init() -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[name] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    _quiet()


Job = tuple[str, int, str, int, int, int, int]  # problem, max_epochs, method, seed, budget, iterations, n_init


def _run_job(job: Job) -> RunResult:
    problem_name, max_epochs, method_name, seed, budget, iterations, n_init = job
    method = next(m for m in methods(n_init, iterations) if m.name == method_name)
    return run_one(method, _problem(problem_name, max_epochs), seed, budget)


def run_jobs(jobs: Sequence[Job], processes: int, label: str) -> list[RunResult]:
    results: list[RunResult] = []
    started = time.perf_counter()

    def progress(result: RunResult) -> None:
        results.append(result)
        print(
            f"\r[{label}] {len(results)}/{len(jobs)} runs, {time.perf_counter() - started:.0f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    if processes > 1:
        with multiprocessing.get_context("spawn").Pool(processes, initializer=_worker_init) as pool:
            for result in pool.imap_unordered(_run_job, jobs):
                progress(result)
    else:
        for job in jobs:
            progress(_run_job(job))
    print(file=sys.stderr)
    return results


# ---------------------------------------------------------------------------------------------- statistics


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile; next to an infinite value (never reached, no incumbent yet) the result
    is that infinite value, so the summaries never look better than the runs."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    a, b = ordered[lo], ordered[hi]
    if lo == hi or a == b:
        return a
    if math.isinf(a):
        return a
    if math.isinf(b):
        return b
    return a + (b - a) * (position - lo)


def score_at(result: RunResult, epochs: float) -> float:
    best = -math.inf
    for spent, score in result.curve:
        if spent > epochs:
            break
        best = score
    return best


def epochs_to_reach(result: RunResult, target: float) -> float:
    for spent, score in result.curve:
        if score >= target - 1e-12:
            return float(spent)
    return math.inf


def _fmt(value: float, digits: int) -> str:
    if math.isinf(value):
        return "never" if value > 0 else "-"
    return f"{value:.{digits}f}"


def _summary(values: Sequence[float], digits: int) -> str:
    return f"{_fmt(quantile(values, 0.5), digits)} [{_fmt(quantile(values, 0.25), digits)}, {_fmt(quantile(values, 0.75), digits)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def report(problem: Problem, budget: int, iterations: int, names: Sequence[str], results: list[RunResult]) -> str:
    digits = 4 if problem.name == "mnist_mlp" else 3
    by: dict[str, dict[int, RunResult]] = {}
    for result in results:
        by.setdefault(result.method, {})[result.seed] = result
    seeds = sorted(by[KT_HYPERBAND])
    targets = {seed: score_at(by[KT_HYPERBAND][seed], budget) for seed in seeds}
    out = [
        f"## {problem.name}: {problem.description}",
        "",
        f"max_epochs R = {problem.max_epochs}, B = {budget} epochs (Keras Tuner Hyperband, factor 3, "
        f"hyperband_iterations = {iterations}), full-budget methods: {budget // problem.max_epochs} trials; "
        f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]})"
        + (f"; optimum {problem.optimum}" if problem.optimum is not None else ""),
        "",
        "Budget to reach Keras Tuner Hyperband's final score of the same seed (fraction of B), and the final score:",
        "",
    ]
    ratios: dict[str, list[float]] = {}
    finals: dict[str, list[float]] = {}
    rows = []
    for name in names:
        runs = [by[name][s] for s in seeds]
        ratios[name] = [epochs_to_reach(r, targets[r.seed]) / budget for r in runs]
        finals[name] = [score_at(r, budget) for r in runs]
        reached = sum(not math.isinf(x) for x in ratios[name])
        rows.append(
            [
                name,
                f"{reached}/{len(runs)}",
                _summary(ratios[name], 2),
                _summary(finals[name], digits),
                f"{quantile([r.trials for r in runs], 0.5):.0f}",
                f"{quantile([r.full_trials for r in runs], 0.5):.0f}",
                f"{quantile([r.seconds for r in runs], 0.5):.1f}",
            ]
        )
    header = ["method", "reached", "budget/B to reach", "final score at B", "trials", "at R", "s/run"]
    out += [_table(header, rows), "", "Anytime score of the incumbent, median [q1, q3] over seeds (- = none yet):", ""]
    rows = []
    for name in names:
        runs = [by[name][s] for s in seeds]
        rows.append([name, *(_summary([score_at(r, f * budget) for r in runs], digits) for f in FRACTIONS)])
    header = ["method", *(f"{f * budget:.0f} ep ({f:.0%})" for f in FRACTIONS)]
    out += [_table(header, rows), ""]
    out += _verdict(names, seeds, ratios, finals, by, budget, digits)
    return "\n".join(out)


def _verdict(
    names: Sequence[str],
    seeds: Sequence[int],
    ratios: dict[str, list[float]],
    finals: dict[str, list[float]],
    by: dict[str, dict[int, RunResult]],
    budget: int,
    digits: int,
) -> list[str]:
    ours = [n for n in names if n.startswith("hpsearch")]
    if not ours or OPTUNA not in names:
        return []
    best = min(ours, key=lambda n: (quantile(ratios[n], 0.5), -quantile(finals[n], 0.5)))
    ratio = quantile(ratios[best], 0.5)
    within = sum(x <= 1 / 3 for x in ratios[best])
    lines = [
        f"Verdict: our best strategy here (lowest median budget to reach) is {best}.",
        f"- Reach Keras Tuner Hyperband's final score within B/3: "
        f"{'YES' if ratio <= 1 / 3 else 'NO'} (median {_fmt(ratio, 2)} of B; within B/3 in {within}/{len(seeds)} seeds).",
    ]
    for name in ours:
        mine, theirs = finals[name], finals[OPTUNA]
        wins = sum(a > b for a, b in zip(mine, theirs, strict=True))
        losses = sum(a < b for a, b in zip(mine, theirs, strict=True))
        better = quantile(mine, 0.5) > quantile(theirs, 0.5)
        if name == best or better:
            lines.append(
                f"- {name} vs Optuna TPE+HyperbandPruner at B: median {_fmt(quantile(mine, 0.5), digits)} vs "
                f"{_fmt(quantile(theirs, 0.5), digits)} ({'BEATS' if better else 'DOES NOT BEAT'}; per seed "
                f"{wins} wins, {losses} losses, {len(seeds) - wins - losses} ties)"
            )
    if not any(quantile(finals[n], 0.5) > quantile(finals[OPTUNA], 0.5) for n in ours):
        lines.append("- None of our strategies beats Optuna TPE+HyperbandPruner's median final score here.")
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds for the synthetic problems (default 10)")
    parser.add_argument("--max-epochs", type=int, default=27, help="R for the synthetic problems (default 27)")
    parser.add_argument("--iterations", type=int, default=1, help="Keras Tuner hyperband_iterations defining B")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the synthetic runs")
    parser.add_argument("--n-initial", type=int, default=10, help="start-up trials of the model-based samplers")
    parser.add_argument("--problems", default="hartmann6,counting_ones", help="synthetic problems to run")
    parser.add_argument("--methods", default="", help="comma-separated subset of methods (default: all)")
    parser.add_argument("--mnist", action="store_true", help="also run the MNIST-5k MLP with real training")
    parser.add_argument("--mnist-seeds", type=int, default=2)
    parser.add_argument("--mnist-max-epochs", type=int, default=9)
    parser.add_argument("--mnist-iterations", type=int, default=1)
    parser.add_argument("--mnist-jobs", type=int, default=1, help="processes for MNIST (each trains on 1 thread)")
    parser.add_argument("--json", type=Path, help="write every run's curve here")
    args = parser.parse_args(argv)
    _quiet()

    names = [m.name for m in methods(args.n_initial, args.iterations)]
    if args.methods:
        wanted = [n.strip() for n in args.methods.split(",")]
        unknown = set(wanted) - set(names)
        if unknown:
            parser.error(f"unknown methods {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in wanted or n == KT_HYPERBAND]

    started = time.perf_counter()
    print(
        f"# search quality, {datetime.date.today()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"command: {' '.join(['python', *sys.argv])}\n"
    )
    sections: list[tuple[str, int, int, int, int]] = [
        (name, args.max_epochs, args.seeds, args.iterations, args.jobs) for name in args.problems.split(",") if name
    ]
    if args.mnist:
        sections.append(("mnist_mlp", args.mnist_max_epochs, args.mnist_seeds, args.mnist_iterations, args.mnist_jobs))
    everything: list[RunResult] = []
    for problem_name, max_epochs, seeds, iterations, jobs in sections:
        budget = keras_tuner_hyperband_budget(max_epochs, iterations)
        work: list[Job] = [
            (problem_name, max_epochs, name, seed, budget, iterations, args.n_initial)
            for seed in range(seeds)
            for name in names
        ]
        section_started = time.perf_counter()
        results = run_jobs(work, jobs, problem_name)
        for result in results:
            if result.method == KT_HYPERBAND and result.spent != budget:
                raise AssertionError(f"Keras Tuner Hyperband spent {result.spent} epochs, expected {budget}")
        everything += results
        print(report(_problem(problem_name, max_epochs), budget, iterations, names, results))
        print(f"({problem_name}: {time.perf_counter() - section_started:.0f} s wall, {jobs} process(es))\n", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in everything], indent=1))


if __name__ == "__main__":
    main()
