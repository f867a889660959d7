"""The simulated clock of benchmarks/simclock: its event loop on known schedules (constant epoch durations),
its seeded durations, and hpsearch's planning driven through it with several workers."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from simclock.clock import HeavyTail, Job, simulate


def _observe(job: Job, epoch: int) -> float:
    return float(epoch)


class Queue:
    """Hands out the given budgets in order, one job per free worker; records what it saw."""

    def __init__(self, budgets: Sequence[int], stop_after: dict[int, int] | None = None) -> None:
        self.budgets = list(budgets)
        self.stop_after = stop_after or {}
        self.done: list[tuple[int, float, list[float], bool]] = []
        self.handed = 0

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        if not self.budgets:
            return None
        jobs = []
        for _ in free[: len(self.budgets)]:
            jobs.append(Job({"i": self.handed}, 0, self.budgets.pop(0)))
            self.handed += 1
        return jobs

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        limit = self.stop_after.get(job.params["i"])
        return limit is None or epoch < limit

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        self.done.append((job.params["i"], now, values, stopped))


def test_free_workers_pull_the_next_job_at_once() -> None:
    driver = Queue([3, 1, 2, 2])
    result = simulate(driver, 2, lambda job, epoch: 1.0, _observe)
    # worker 0: job 0 over [0, 3], then job 3 over [3, 5]; worker 1: job 1 over [0, 1], job 2 over [1, 3].
    assert result.starts == [(0.0, 0), (0.0, 1), (1.0, 1), (3.0, 0)]
    assert [(i, now) for i, now, _, _ in driver.done] == [(1, 1.0), (0, 3.0), (2, 3.0), (3, 5.0)]
    assert result.end == 5.0
    assert result.busy == 8.0
    assert result.idle_share == pytest.approx(0.2)  # worker 1 idles over [3, 5]
    assert result.jobs == 4 and result.epochs == 8
    assert driver.done[0][2] == [1.0]  # values of epochs initial_epoch + 1 .. budget


class Rounds:
    """Synchronous rounds: the next round's jobs only once every job of the last one has finished."""

    def __init__(self, rounds: list[list[int]]) -> None:
        self.rounds = rounds
        self.pending = 0
        self.asked_at: list[float] = []

    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        self.asked_at.append(now)
        if self.pending:
            return []
        if not self.rounds:
            return None
        budgets = self.rounds.pop(0)
        assert len(budgets) <= len(free)
        self.pending = len(budgets)
        return [Job({"b": b, "r": len(self.rounds)}, 0, b) for b in budgets]

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        return True

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        self.pending -= 1


def test_a_waiting_search_leaves_workers_idle_until_a_result() -> None:
    driver = Rounds([[1, 4], [2, 2]])
    result = simulate(driver, 2, lambda job, epoch: 0.5, _observe)
    # Round 1 ends at 2.0 (the 4-epoch straggler); round 2 runs over [2, 3]. Worker 0 idles over [0.5, 2].
    assert driver.asked_at == [0.0, 0.5, 2.0, 3.0, 3.0]
    assert result.end == 3.0
    assert result.busy == 0.5 + 2.0 + 1.0 + 1.0
    assert result.idle_share == pytest.approx(1 - 4.5 / 6)


def test_the_horizon_cuts_running_jobs_and_counts_their_time() -> None:
    driver = Queue([10, 10, 10])
    result = simulate(driver, 2, lambda job, epoch: 1.0, _observe, horizon=4.5)
    assert result.end == 4.5
    assert driver.done == []  # nothing finished: the third job never started
    assert result.jobs == 2 and result.epochs == 8
    assert result.busy == 9.0 and result.idle_share == 0.0


def test_a_stopped_job_frees_its_worker_at_that_epoch() -> None:
    driver = Queue([5, 5], stop_after={0: 2})
    result = simulate(driver, 1, lambda job, epoch: 1.0, _observe)
    assert [(i, now, stopped) for i, now, _, stopped in driver.done] == [(0, 2.0, True), (1, 7.0, False)]
    assert result.starts == [(0.0, 0), (2.0, 0)]
    assert result.idle_share == 0.0


def test_heavy_tail_durations_are_common_random_numbers() -> None:
    durations = HeavyTail(seed=3)
    job = Job({"x": 0.25}, 0, 9)
    assert durations(job, 4) == HeavyTail(seed=3)(Job({"x": 0.25}, 3, 9), 4)  # same config and epoch
    assert durations(job, 4) != HeavyTail(seed=4)(job, 4)
    slowdowns = [durations.slowdown({"x": i}) for i in range(2000)]
    stragglers = [s for s in slowdowns if s > 1.0]
    assert 0.07 < len(stragglers) / len(slowdowns) < 0.13
    assert max(stragglers) <= durations.cap
    assert all(d > 0 for d in (durations(Job({"x": i}, 0, 3), 1) for i in range(200)))


def test_hpsearch_hyperband_with_four_workers_plans_each_promotion_once() -> None:
    from simclock.drivers import HpsearchDriver, Recorder
    from sq_problems import Hartmann6

    from hpsearch.strategies.schedulers import Hyperband

    problem = Hartmann6()
    recorder = Recorder(problem.max_epochs, lambda params: 0.0)
    driver = HpsearchDriver({"algorithm": "hyperband", "factor": 3}, problem.space, problem.max_epochs, 1, recorder)

    def observe(job: Job, epoch: int) -> float:
        return float(hash(str(job.params)) % 1000) / 1000 + epoch

    result = simulate(driver, 4, lambda job, epoch: 1.0, observe)
    history = driver.history
    assert len(history) == result.jobs == Hyperband(3).total_trials(problem.max_epochs)
    parents = [t.parent_number for t in history if t.parent_number is not None]
    assert len(parents) == len(set(parents))  # a running trial is never promoted twice
    assert all(t.state == "COMPLETED" for t in history)
    assert result.epochs == sum(t.budget_epochs - t.initial_epoch for t in history)
    assert recorder.full_trials == sum(t.budget_epochs == problem.max_epochs for t in history)
    assert math.isclose(result.busy, result.epochs)  # one time unit per epoch


def test_the_report_reads_scores_at_the_anchors_wall_time() -> None:
    from simclock.report import Table
    from simclock.runner import ANCHOR, Run

    anchor = Run("p", 4, 1, ANCHOR, math.inf, end=10.0, curve=[(4.0, 0.5), (8.0, 0.7)])
    fast = Run("p", 4, 1, "hpsearch asha", 10.0, end=10.0, curve=[(2.0, 0.6), (5.0, 0.9)])
    late = Run("p", 4, 1, "dehb", 10.0, end=10.0, curve=[(9.0, 0.65)])
    empty = Run("p", 4, 1, "smac mf", 10.0, end=10.0)
    table = Table([anchor, fast, late, empty])
    assert table.target(1) == (0.7, 10.0)  # Keras Tuner Hyperband's final score and wall time
    assert table.score("hpsearch asha", 1) == 0.9 and table.ratio("hpsearch asha", 1) == 0.5
    assert table.score("dehb", 1) == 0.65 and table.ratio("dehb", 1) == math.inf  # never reaches 0.7
    assert table.score("smac mf", 1) == -math.inf  # nothing trained to max_epochs by T: loses every duel
    assert fast.score_at(4.9) == 0.6 and fast.score_at(1.0) is None
    assert table.duel("hpsearch asha", "dehb")[:2] == (1, 0)
    assert table.duel("dehb", "smac mf")[:2] == (1, 0)
    assert table.best_ours() == "hpsearch asha"


def test_the_mean_epoch_duration_matches_the_drawn_durations() -> None:
    durations = HeavyTail(seed=5)
    drawn = [durations(Job({"x": i}, 0, 3), e) for i in range(4000) for e in (1, 2)]
    assert sum(drawn) / len(drawn) == pytest.approx(durations.mean(), rel=0.05)
    assert durations.mean() == pytest.approx(math.exp(0.25**2 / 2) * (0.9 + 0.1 * 1.875))


def test_auto_resolves_with_the_simulated_worker_count_and_horizon() -> None:
    from simclock.runner import auto_search
    from sq_problems import Hartmann6

    problem = Hartmann6()
    mean = HeavyTail(1).mean()
    # 1 worker for 27 x 14 epochs: deep; 16 workers for about 27 epochs each: shallow.
    one, label_one = auto_search(problem, 1, 27 * 14 * mean, 1)
    many, label_many = auto_search(problem, 16, 27 * mean, 1)
    assert (label_one, one["algorithm"]) == ("bohb", "bohb")
    assert (label_many, many["algorithm"], many["sampler"]) == ("asha+tpe", "asha", "tpe")
    assert many["max_total_epochs"] == 16 * 27 and many["max_trials"] >= many["max_total_epochs"]


def test_the_switch_table_compares_bohb_asha_and_auto_on_the_same_seeds() -> None:
    from simclock.report import switch
    from simclock.runner import ANCHOR, Run

    runs = [Run("p", 4, s, ANCHOR, math.inf, end=10.0, curve=[(5.0, 0.5)]) for s in (1, 2)]
    for seed, (bohb, asha) in enumerate([(0.9, 0.7), (0.6, 0.8)], start=1):
        runs += [
            Run("p", 4, seed, "hpsearch bohb", 10.0, end=10.0, epochs=108, curve=[(6.0, bohb)]),
            Run("p", 4, seed, "hpsearch asha+tpe", 10.0, end=10.0, epochs=108, curve=[(6.0, asha)]),
            Run("p", 4, seed, "hpsearch auto", 10.0, end=10.0, curve=[(6.0, bohb)], note="bohb"),
        ]
    rows = switch({("p", 4, 1.0): runs})
    row = rows[-1].rstrip(" |").split(" | ")
    assert row[3] == "1.0"  # epochs per worker / R: 108 / (4 x 27)
    assert row[6] == "0.000 (1/1)"  # median of +0.2 and -0.2; one win each
    assert row[8] == "0.750 (bohb)" and row[9] == "0.000; 0.000"  # auto picked bohb: 0.75 median, as the best
    assert row[10] == "0.150" and row[11] == "yes"  # the IQR of bohb's 0.6 and 0.9 (inclusive quartiles)


def test_learning_curves_train_each_epoch_of_a_configuration_once_and_resume_from_its_state() -> None:
    from simclock.real import LearningCurves

    class Trainer:
        """A session whose epoch e of configuration x shows x + e / 10; it records every call."""

        def __init__(self) -> None:
            self.calls: list[tuple[float, int, int, object]] = []

        def train(self, params, initial_epoch, budget_epochs, parent, on_epoch):  # type: ignore[no-untyped-def]
            self.calls.append((params["x"], initial_epoch, budget_epochs, parent))
            values = [params["x"] + e / 10 for e in range(initial_epoch + 1, budget_epochs + 1)]
            return values, f"state of {params['x']} after {budget_epochs}"

        def trial_objective(self, values: Sequence[float]) -> float:
            return max(values)

    trainer = Trainer()
    curves = LearningCurves(trainer)  # type: ignore[arg-type]
    low, promoted, scratch = Job({"x": 1.0}, 0, 3), Job({"x": 1.0}, 3, 9), Job({"x": 1.0}, 0, 9)
    assert [curves.observe(low, e) for e in (1, 2, 3)] == [1.1, 1.2, 1.3]
    assert [curves.observe(promoted, e) for e in range(4, 10)] == pytest.approx([1 + e / 10 for e in range(4, 10)])
    # DEHB and SMAC3 retrain a fidelity from scratch: the same curve, nothing trained again.
    assert [curves.observe(scratch, e) for e in range(1, 10)] == pytest.approx([1 + e / 10 for e in range(1, 10)])
    assert trainer.calls == [(1.0, 0, 3, None), (1.0, 3, 9, "state of 1.0 after 3")]
    assert curves.epochs_trained == 9
    assert curves.score({"x": 1.0}) == pytest.approx(1.9)


def test_dehb_and_smac_see_mnists_stepped_units_and_drop_an_inactive_dropout_rate() -> None:
    pytest.importorskip("ConfigSpace")
    from simclock.drivers_ext import config_space, from_config

    from hpsearch.space import SearchSpace

    def hp(class_name: str, **config: object) -> dict[str, object]:
        return {"class_name": class_name, "config": {"conditions": [], **config}}

    space = SearchSpace(
        {
            "space": [  # studies/mnist_mlp.py's space, as discovery writes it
                hp("Int", name="units", min_value=32, max_value=512, step=32, sampling="linear"),
                hp("Choice", name="activation", values=["relu", "tanh"], ordered=False),
                hp("Boolean", name="dropout", default=False),
                hp("Float", name="dropout_rate", min_value=0.1, max_value=0.5, step=None, sampling="linear",
                   conditions=[{"class_name": "Parent", "config": {"name": "dropout", "values": [True]}}]),
                hp("Float", name="lr", min_value=1e-4, max_value=1e-2, step=None, sampling="log", default=1e-3),
            ]
        }
    )  # fmt: skip
    configs = [from_config(space, c) for c in config_space(space, seed=3).sample_configuration(200)]
    assert {c["units"] for c in configs} == set(range(32, 513, 32))  # every grid value, nothing between
    assert all(("dropout_rate" in c) == c["dropout"] for c in configs)
    assert {c["activation"] for c in configs} == {"relu", "tanh"}
    assert all(1e-4 <= c["lr"] <= 1e-2 for c in configs)
