"""The simulated clock: N workers, one event per trained epoch, no real waiting.

A *driver* adapts one search library. Whenever workers are free, the loop asks the driver for jobs
(``next_jobs(now, free_workers)``); it may return fewer than asked, even none (the search waits for a
result, as synchronous Hyperband does): those workers stay idle until the next epoch anywhere ends, when
they are offered again. A job trains epochs ``initial_epoch + 1 .. budget_epochs``; each epoch takes
``duration(job, epoch)`` simulated seconds, and at its end the driver sees the observed value
(``on_epoch``, which may stop the job: pruning) and, at the job's end, every value (``on_done``).

Why an event queue rather than a time-stepped loop: with heavy-tailed epoch durations no step size is both
exact and cheap, and the order of events at equal times must be deterministic (a sequence number breaks
ties), so a run repeats exactly.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Params = Mapping[str, Any]
_NORMAL = statistics.NormalDist()


@dataclass(frozen=True)
class Job:
    """One unit of work for a worker: train ``params`` from ``initial_epoch`` to ``budget_epochs``."""

    params: Params
    initial_epoch: int
    budget_epochs: int
    token: Any = None  # the driver's handle (a trial number, an Optuna trial, ...)


class Driver(Protocol):
    def next_jobs(self, now: float, free: Sequence[int]) -> list[Job] | None:
        """Jobs for (some of) the ``free`` workers, in their order; [] to wait; None: no job ever again."""
        ...

    def on_epoch(self, job: Job, epoch: int, value: float, now: float) -> bool:
        """An epoch of ``job`` ended at ``now``; False stops the job here."""
        ...

    def on_done(self, job: Job, values: list[float], now: float, stopped: bool) -> None:
        """``job`` ended at ``now`` (``stopped``: by ``on_epoch``) after the epochs whose values are given."""
        ...


Duration = Callable[[Job, int], float]
Observe = Callable[[Job, int], float]  # the value a job's epoch shows


@dataclass
class SimResult:
    end: float  # when the run stopped: the horizon, or the last event if the search finished first
    workers: int
    busy: float  # worker-seconds spent training (a job cut by the horizon counts up to the horizon)
    jobs: int = 0  # jobs started
    epochs: int = 0  # epochs trained
    starts: list[tuple[float, int]] = field(default_factory=list)  # (time, worker) of every job start
    finishes: list[tuple[float, int]] = field(default_factory=list)  # (time, worker) of every job end

    @property
    def idle_share(self) -> float:
        """The share of worker time with no job, over [0, end]."""
        total = self.workers * self.end
        return 1.0 - self.busy / total if total > 0 else 0.0


def simulate(
    driver: Driver, workers: int, duration: Duration, observe: Observe, horizon: float = math.inf
) -> SimResult:
    """Run ``driver`` on ``workers`` simulated workers until ``horizon`` or until it has nothing left."""
    free = list(range(workers))
    events: list[tuple[float, int, int, int]] = []  # (time, sequence, worker, epoch that ends)
    running: dict[int, tuple[Job, float, list[float]]] = {}  # worker -> (job, started, values)
    result = SimResult(end=0.0, workers=workers, busy=0.0)
    sequence = 0
    finished = False

    def start(now: float) -> None:
        nonlocal sequence, finished
        if finished or not free:
            return
        jobs = driver.next_jobs(now, list(free))
        if jobs is None:
            finished = True
            return
        for job in jobs:
            worker = free.pop(0)
            first = job.initial_epoch + 1
            running[worker] = (job, now, [])
            result.jobs += 1
            result.starts.append((now, worker))
            heapq.heappush(events, (now + duration(job, first), sequence, worker, first))
            sequence += 1

    now = 0.0
    start(now)
    while events:
        when, _, worker, epoch = heapq.heappop(events)
        if when > horizon:
            now = horizon
            break
        now = when
        job, started, values = running[worker]
        values.append(observe(job, epoch))
        result.epochs += 1
        more = driver.on_epoch(job, epoch, values[-1], now)
        if more and epoch < job.budget_epochs:
            heapq.heappush(events, (now + duration(job, epoch + 1), sequence, worker, epoch + 1))
            sequence += 1
            continue
        del running[worker]
        result.busy += now - started
        result.finishes.append((now, worker))
        driver.on_done(job, values, now, stopped=not more)
        free.append(worker)
        free.sort()  # the lowest-numbered free worker takes the next job: deterministic
        start(now)
    result.end = now
    result.busy += sum(now - started for _, started, _ in running.values())  # jobs cut by the horizon
    return result


def _unit(*key: Any) -> float:
    """A uniform number in (0, 1) from a hash of ``key``: independent of call order (common random numbers)."""
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") + 0.5) / 2**64


@dataclass(frozen=True)
class HeavyTail:
    """Epoch durations with stragglers, seeded and a function of (seed, configuration, epoch) only, so two
    methods that train the same configuration see the same durations.

    Each epoch takes ``exp(jitter * z)`` (z standard normal: log-normal jitter of every epoch); a trial is a
    straggler with probability ``straggler_share`` and then every one of its epochs takes ``1 + L`` times
    longer, L ~ Lomax(``tail``) (Pareto-tailed: mean 1 / (tail - 1)), capped at ``cap``. With the defaults the
    mean epoch takes about 1.1 units and one trial in ten is a straggler: twice as slow on average, about 0.6%
    of all trials four times or more, none more than eight times.
    """

    seed: int
    jitter: float = 0.25
    straggler_share: float = 0.1
    tail: float = 2.0
    cap: float = 8.0

    def mean(self) -> float:
        """The expected duration of an epoch: E[exp(jitter z)] times the expected slowdown (a straggler's
        E[min(1 + L, cap)] = 1 + (1 - cap^(1 - tail)) / (tail - 1))."""
        capped = 1.0 + (1.0 - self.cap ** (1.0 - self.tail)) / (self.tail - 1.0)
        slow = 1.0 - self.straggler_share + self.straggler_share * capped
        return math.exp(self.jitter**2 / 2) * slow

    def slowdown(self, params: Params) -> float:
        key = json.dumps(dict(params), sort_keys=True, default=str)
        if _unit(self.seed, "straggler", key) >= self.straggler_share:
            return 1.0
        lomax = _unit(self.seed, "tail", key) ** (-1.0 / self.tail) - 1.0  # inverse CDF of Lomax(tail)
        return min(1.0 + lomax, self.cap)

    def __call__(self, job: Job, epoch: int) -> float:
        key = json.dumps(dict(job.params), sort_keys=True, default=str)
        u = _unit(self.seed, "epoch", key, epoch)
        z = _NORMAL.inv_cdf(u)
        return math.exp(self.jitter * z) * self.slowdown(job.params)


def constant(seconds: float = 1.0) -> Duration:
    """Every epoch takes ``seconds`` (the event loop's tests)."""
    return lambda job, epoch: seconds
