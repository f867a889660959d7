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
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from scipy.stats import binomtest
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
        seed=1,
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


PROBLEMS: dict[str, type[Problem]] = {"hartmann6": Hartmann6, "counting_ones": CountingOnes, "mnist_mlp": MnistMLP}
_INSTANCES: dict[tuple[str, int], Problem] = {}


def _problem(name: str, max_epochs: int) -> Problem:
    key = (name, max_epochs)
    if key not in _INSTANCES:
        _INSTANCES[key] = PROBLEMS[name](max_epochs)  # type: ignore[call-arg]
    return _INSTANCES[key]


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
    median, q1, q3 = (_fmt(quantile(values, q), digits) for q in (0.5, 0.25, 0.75))
    return f"{median} [{q1}, {q3}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def report(section: dict[str, Any], results: Sequence[RunResult]) -> tuple[str, list[str]]:
    """The tables of one problem; ``section`` as written to the JSON file (see ``main``)."""
    problem = PROBLEMS[section["problem"]]
    budget, iterations, names = section["budget"], section["iterations"], section["names"]
    max_epochs = section["max_epochs"]
    digits = 4 if problem.name == "mnist_mlp" else 3
    by: dict[str, dict[int, RunResult]] = {}
    for result in results:
        by.setdefault(result.method, {})[result.seed] = result
    seeds = sorted(by[KT_HYPERBAND])
    targets = {seed: score_at(by[KT_HYPERBAND][seed], budget) for seed in seeds}
    out = [
        f"## {problem.name}: {problem.describe(max_epochs)}",
        "",
        f"max_epochs R = {max_epochs}, B = {budget} epochs (Keras Tuner Hyperband, factor 3, "
        f"hyperband_iterations = {iterations}), full-budget methods: {budget // max_epochs} trials; "
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
    lines, row = _verdict(names, seeds, ratios, finals, digits)
    return "\n".join(out + lines), [problem.name, *row] if row else []


def _verdict(
    names: Sequence[str],
    seeds: Sequence[int],
    ratios: dict[str, list[float]],
    finals: dict[str, list[float]],
    digits: int,
) -> tuple[list[str], list[str]]:
    """Per-strategy checks against the issue's two targets, and the summary row of our best strategy: the one
    reaching Keras Tuner Hyperband's final score within B/3 on most seeds (then lowest median budget, then
    highest median final score)."""
    ours = [n for n in names if n.startswith("hpsearch")]
    if not ours or OPTUNA not in names:
        return [], []
    theirs = finals[OPTUNA]
    rows, checks = [], {}
    for name in ours:
        mine = finals[name]
        ratio = quantile(ratios[name], 0.5)
        within = sum(x <= 1 / 3 for x in ratios[name])
        wins = sum(a > b for a, b in zip(mine, theirs, strict=True))
        losses = sum(a < b for a, b in zip(mine, theirs, strict=True))
        p_value = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        fast, better = ratio <= 1 / 3, quantile(mine, 0.5) > quantile(theirs, 0.5)
        checks[name] = (within, ratio, quantile(mine, 0.5), fast, better, p_value)
        rows.append(
            [
                name,
                _fmt(ratio, 2),
                f"{within}/{len(seeds)}",
                "yes" if fast else "NO",
                f"{_fmt(quantile(mine, 0.5), digits)} vs {_fmt(quantile(theirs, 0.5), digits)}",
                f"{wins}/{losses}/{len(seeds) - wins - losses}",
                f"{p_value:.2f}" if p_value >= 0.01 else "<0.01",
                "yes" if better else "NO",
            ]
        )
    header = [
        "strategy",
        "median budget/B",
        "seeds <= B/3",
        "<= B/3",
        "final at B vs Optuna (median)",
        "W/L/T vs Optuna",
        "sign test p",
        "beats Optuna",
    ]
    best = max(ours, key=lambda n: (checks[n][0], -checks[n][1], checks[n][2]))
    within, ratio, _, fast, better, p_value = checks[best]
    n = len(seeds)
    caveats = []
    if fast and 2 * within <= n:
        caveats.append(f"borderline: within B/3 on only {within} of {n} seeds")
    if better and p_value >= 0.05:
        caveats.append(f"the win over Optuna is not significant: sign test p = {p_value:.2f}")
    if n < 5:
        caveats.append(f"{n} seeds only: read as anecdotal")
    lines = [
        "Targets (reach Keras Tuner Hyperband's final score with at most B/3 epochs; beat Optuna TPE + "
        "HyperbandPruner's final score at equal budget B; W/L/T = same-seed wins/losses/ties):",
        "",
        _table(header, rows),
        "",
        f"Verdict: our best strategy here is {best}: "
        + ("reaches" if fast else "does NOT reach")
        + f" Keras Tuner Hyperband's final score within B/3 (median {_fmt(ratio, 2)} of B, {within}/{n} seeds) and "
        + ("beats" if better else "does NOT beat")
        + " Optuna TPE + HyperbandPruner at equal budget"
        + (f" ({'; '.join(caveats)})." if caveats else "."),
        "",
    ]
    summary = [best, _fmt(ratio, 2), f"{within}/{n}", "yes" if fast else "NO", "yes" if better else "NO"]
    return lines, summary


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
    parser.add_argument("--mnist-iterations", type=int, default=1, help="hyperband_iterations defining B for MNIST")
    parser.add_argument(
        "--mnist-jobs", type=int, default=1, help="processes for MNIST (more than 1: each trains on 1 thread)"
    )
    parser.add_argument("--json", type=Path, help="write every run's curve here")
    parser.add_argument("--report-from", type=Path, help="print the report of a --json file again, run nothing")
    args = parser.parse_args(argv)
    _quiet()
    if args.report_from:
        rerender(args.report_from)
        return

    names = [m.name for m in methods(args.n_initial, args.iterations)]
    if args.methods:
        wanted = [n.strip() for n in args.methods.split(",")]
        unknown = set(wanted) - set(names)
        if unknown:
            parser.error(f"unknown methods {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in wanted or n == KT_HYPERBAND]

    started = time.perf_counter()
    header = (
        f"# search quality, {datetime.date.today()}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"command: {shlex.join(['python', *sys.argv])}"
    )
    print(header + "\n", flush=True)
    plan: list[tuple[str, int, int, int, int]] = [
        (name, args.max_epochs, args.seeds, args.iterations, args.jobs) for name in args.problems.split(",") if name
    ]
    if args.mnist:
        plan.append(("mnist_mlp", args.mnist_max_epochs, args.mnist_seeds, args.mnist_iterations, args.mnist_jobs))
    sections: list[dict[str, Any]] = []
    everything: list[RunResult] = []
    for problem_name, max_epochs, seeds, iterations, jobs in plan:
        budget = keras_tuner_hyperband_budget(max_epochs, iterations)
        work: list[Job] = [
            (problem_name, max_epochs, name, seed, budget, iterations, args.n_initial)
            for seed in range(1, seeds + 1)  # not 0: Keras Tuner's oracles take seed 0 as "no seed" (random)
            for name in names
        ]
        section_started = time.perf_counter()
        results = run_jobs(work, jobs, problem_name)
        for result in results:
            if result.method == KT_HYPERBAND and result.spent != budget:
                raise AssertionError(f"Keras Tuner Hyperband spent {result.spent} epochs, expected {budget}")
        section = {
            "problem": problem_name,
            "max_epochs": max_epochs,
            "budget": budget,
            "iterations": iterations,
            "names": names,
            "jobs": jobs,
            "wall_s": round(time.perf_counter() - section_started, 1),
        }
        sections.append(section)
        everything += results
        print(report(section, results)[0])
        print(f"({problem_name}: {section['wall_s']:.0f} s wall, {jobs} process(es))\n", flush=True)
    print(summary(sections, everything))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        runs = [asdict(r) for r in everything]
        args.json.write_text(json.dumps({"header": header, "sections": sections, "runs": runs}, indent=1))


def summary(sections: Sequence[dict[str, Any]], results: Sequence[RunResult]) -> str:
    rows = []
    for section in sections:
        row = report(section, [r for r in results if r.problem == section["problem"]])[1]
        if row:
            rows.append(row)
    header = ["problem", "our best", "median budget/B to reach", "seeds <= B/3", "<= B/3", "beats Optuna at B"]
    return "## Summary\n\n" + _table(header, rows) + "\n" if rows else ""


def rerender(path: Path) -> None:
    """Print the report of a ``--json`` file again (no runs)."""
    saved = json.loads(path.read_text())
    runs = [RunResult(**{**r, "curve": [tuple(p) for p in r["curve"]]}) for r in saved["runs"]]
    print(saved["header"] + "\n")
    for section in saved["sections"]:
        print(report(section, [r for r in runs if r.problem == section["problem"]])[0])
        print(f"({section['problem']}: {section['wall_s']:.0f} s wall, {section['jobs']} process(es))\n")
    print(summary(saved["sections"], runs))


if __name__ == "__main__":
    main()
