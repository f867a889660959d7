"""Tables and the verdict of a simulated-clock run (markdown on stdout).

Per problem and worker count N, for every method over the seeds it ran:

- *score at T*: the incumbent's exact score at T = Keras Tuner Hyperband's wall time for the same seed and
  N (equal wall time), median [q1, q3];
- *time to target / T*: the first simulated time at which the incumbent's score reaches Keras Tuner
  Hyperband's final score (same seed and N), as a fraction of T; median over seeds ("never" counts as
  infinite) and how many seeds reach it by T;
- *idle*: the share of worker time with no job, over [0, T] (the anchor: over its own run);
- trials (jobs started), epochs trained, CPU seconds of the searcher per run.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from simclock.runner import ANCHOR, Run

OURS = "hpsearch"
RIVALS = ("dehb", "smac mf", "optuna tpe+hyperband")
TARGET_RATIO = 1 / 8


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else math.nan
        return v, v, v
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "none"
    if math.isinf(value):
        return "never"
    return f"{value:.{digits}f}"


def sign_test(wins: int, losses: int) -> float:
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0


class Table:
    """The runs of one problem and worker count, by method and seed."""

    def __init__(self, runs: Iterable[Run]) -> None:
        self.by_method: dict[str, dict[int, Run]] = defaultdict(dict)
        for run in runs:
            self.by_method[run.method][run.seed] = run
        self.anchor = self.by_method.get(ANCHOR, {})

    def target(self, seed: int) -> tuple[float, float] | None:
        """(Keras Tuner Hyperband's final score, its wall time T) for ``seed``."""
        run = self.anchor.get(seed)
        if run is None or not run.curve:
            return None
        return run.curve[-1][1], run.end

    def score(self, method: str, seed: int) -> float | None:
        """The incumbent's score at the run's horizon (T times its budget; the anchor's own: at T)."""
        run, target = self.by_method[method].get(seed), self.target(seed)
        if run is None or target is None:
            return None
        score = run.score_at(run.horizon if math.isfinite(run.horizon) else target[1])
        return -math.inf if score is None else score

    def ratio(self, method: str, seed: int) -> float | None:
        run, target = self.by_method[method].get(seed), self.target(seed)
        if run is None or target is None:
            return None
        when = run.time_to(target[0])
        return math.inf if when is None or when > target[1] else when / target[1]

    def seeds(self, method: str) -> list[int]:
        return sorted(s for s in self.by_method[method] if self.target(s) is not None)

    def median_score(self, method: str) -> float:
        values = [v for s in self.seeds(method) if (v := self.score(method, s)) is not None]
        return _median(values)

    def median_ratio(self, method: str) -> float:
        values = [v for s in self.seeds(method) if (v := self.ratio(method, s)) is not None]
        return _median(values)

    def rows(self) -> list[str]:
        out = [
            "| method | seeds | score at T: median [q1, q3] | time to target / T: median (seeds by T) | idle | "
            "trials | epochs | CPU s/run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method, by_seed in self.by_method.items():
            seeds = self.seeds(method)
            if not seeds:
                continue
            scores = [v for s in seeds if (v := self.score(method, s)) is not None and not math.isinf(v)]
            ratios = [v for s in seeds if (v := self.ratio(method, s)) is not None]
            q1, q2, q3 = _quartiles(sorted(scores))
            runs = [by_seed[s] for s in seeds]
            reached = sum(not math.isinf(r) for r in ratios)
            missing = len(seeds) - len(scores)
            note = f" ({missing} with none)" if missing else ""
            out.append(
                f"| {method} | {len(seeds)} | {_fmt(q2)} [{_fmt(q1)}, {_fmt(q3)}]{note} | "
                f"{_fmt(_median(ratios), 2)} ({reached}/{len(seeds)}) | "
                f"{max(0.0, _median([r.idle_share for r in runs])):.2f} | {_median([r.jobs for r in runs]):.0f} | "
                f"{_median([r.epochs for r in runs]):.0f} | {_median([r.cpu_seconds for r in runs]):.1f} |"
            )
        return out

    def best_ours(self) -> str | None:
        ours = [m for m in self.by_method if m.startswith(OURS) and self.seeds(m)]
        return max(ours, key=lambda m: (self.median_score(m), -self.median_ratio(m))) if ours else None

    def duel(self, mine: str, other: str) -> tuple[int, int, float]:
        """Same-seed wins and losses of ``mine`` over ``other`` on the score at T, and the sign test's p."""
        wins = losses = 0
        for seed in set(self.seeds(mine)) & set(self.seeds(other)):
            a, b = self.score(mine, seed), self.score(other, seed)
            if a is None or b is None or a == b:
                continue
            wins += a > b
            losses += a < b
        return wins, losses, sign_test(wins, losses)


def report(runs: Sequence[Run], describe: dict[str, str]) -> list[str]:
    lines: list[str] = []
    groups: dict[tuple[str, int, float], list[Run]] = defaultdict(list)
    anchors: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for run in runs:
        if run.method == ANCHOR:
            anchors[(run.problem, run.workers)].append(run)
        else:
            groups[(run.problem, run.workers, run.budget)].append(run)
    # Every budget's table reads T and the target from the anchor's runs of its (problem, N).
    for problem, workers in anchors:
        if not any(key[:2] == (problem, workers) for key in groups):
            groups[(problem, workers, 1.0)] = []
    for key in groups:
        groups[key] = anchors[key[:2]] + groups[key]
    verdict = [
        "| problem | N | T (KT Hyperband wall time, median) | our best | its time to target / T (target <= 0.125) | "
        "earliest full-R result of any method / T | "
        "score at T: ours vs DEHB, SMAC3, Optuna (same-seed W/L, sign-test p) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (problem, workers, budget), group in groups.items():
        table = Table(group)
        horizon = "" if budget == 1 else f", horizon {budget:g} T"
        lines += ["", f"##### {problem}, N = {workers}{horizon}: {describe.get(problem, '')}", "", *table.rows()]
        best = table.best_ours()
        if best is None:
            continue
        seeds = [s for s in table.anchor if table.target(s) is not None]
        wall = _median([table.anchor[s].end for s in seeds])
        # A score counts once a configuration has trained max_epochs epochs: the earliest such result of any
        # method on the seed bounds what any schedule could reach (as a fraction of T).
        bound = _median([min((r.curve[0][0] for r in group if r.seed == s and r.curve), default=math.nan)
                         / table.anchor[s].end for s in seeds])  # fmt: skip
        duels = []
        for rival in RIVALS:
            if table.seeds(rival):
                w, l_, p = table.duel(best, rival)
                duels.append(f"{_fmt(table.median_score(rival))} {rival} ({w}/{l_}, p = {p:.2f})")
        verdict.append(
            f"| {problem} | {workers}{horizon} | {wall:.1f} | {best}: {_fmt(table.median_score(best))} | "
            f"{_fmt(table.median_ratio(best), 2)} | ~{bound:.2f} | {'; '.join(duels)} |"
        )
    return [*lines, "", "##### Verdict", "", *verdict, *switch(groups)]


SWITCH = ("hpsearch bohb", "hpsearch asha+tpe")
AUTO = "hpsearch auto"


def switch(groups: dict[tuple[str, int, float], list[Run]]) -> list[str]:
    """bohb against asha+tpe per problem, N and horizon (where both ran): the medians, the same-seed
    difference and wins, and ``auto`` against the better of the two (the best fixed choice) with the seed
    spread (the interquartile range of the best fixed choice's scores)."""
    out = [
        "| problem | N | horizon / T | epochs per worker / R (bohb, median) | bohb | asha+tpe | "
        "bohb - asha+tpe: median (W/L) | best fixed | auto (its pick) | auto - best: medians; same-seed median | "
        "seed spread (IQR of best) | auto within the spread |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (problem, workers, budget), group in sorted(groups.items()):
        table = Table(group)
        if not all(table.seeds(m) for m in SWITCH):
            continue
        bohb, asha = SWITCH
        seeds = sorted(set(table.seeds(bohb)) & set(table.seeds(asha)))
        diffs = [table.score(bohb, s) - table.score(asha, s) for s in seeds]  # type: ignore[operator]
        wins, losses, _ = table.duel(bohb, asha)
        best = max(SWITCH, key=table.median_score)
        scores = sorted(v for s in table.seeds(best) if (v := table.score(best, s)) is not None)
        q1, _, q3 = _quartiles(scores)
        depth = _median([r.epochs / (workers * r.max_epochs) for r in table.by_method[bohb].values()])
        auto = pick = gap = within = "-"
        spread = q3 - q1
        if table.seeds(AUTO):
            auto = _fmt(table.median_score(AUTO))
            picks = sorted({r.note for r in table.by_method[AUTO].values() if r.note})
            pick = " / ".join(picks)
            both = sorted(set(table.seeds(AUTO)) & set(table.seeds(best)))
            same_seed = _median([table.score(AUTO, s) - table.score(best, s) for s in both])  # type: ignore[operator]
            medians = table.median_score(AUTO) - table.median_score(best)
            gap = f"{_fmt(medians)}; {_fmt(same_seed)}"
            if not math.isfinite(spread):  # the best fixed choice had no full-length result by the horizon
                within = "n/a"
            else:
                within = "yes" if math.isfinite(medians) and medians >= -spread else "**no**"
        out.append(
            f"| {problem} | {workers} | {budget:g} | {depth:.1f} | {_fmt(table.median_score(bohb))} | "
            f"{_fmt(table.median_score(asha))} | {_fmt(_median(diffs))} ({wins}/{losses}) | {best.split()[-1]} | "
            f"{auto} ({pick}) | {gap} | {_fmt(spread)} | {within} |"
        )
    return ["", "##### bohb or asha+tpe (the switch point) and auto", "", *out] if len(out) > 2 else []
