"""Schedulers: how many epochs each trial gets, which trials continue (promotions) or stop, and when the
study has planned its last trial. All are functions of the trial history: no state survives a call."""

from __future__ import annotations

import math
import statistics
from abc import ABC, abstractmethod
from collections.abc import Sequence

from hpsearch.strategies.base import NewTrial, Sampler, Scheduler, StudyContext, TrialView


def _best_first(trials: Sequence[TrialView], direction: str) -> list[TrialView]:
    return sorted(trials, key=lambda t: (t.objective if direction == "min" else -(t.objective or 0.0), t.number))


def _completed(trials: Sequence[TrialView]) -> list[TrialView]:
    return [t for t in trials if t.state == "COMPLETED" and t.objective is not None]


def _as_view(new: NewTrial, number: int) -> TrialView:
    """A planned trial as the next planning step of the same call sees it."""
    return TrialView(
        number=number,
        state="QUEUED",
        params=new.params,
        objective=None,
        best_epoch=None,
        epochs_done=0,
        budget_epochs=new.budget_epochs,
        initial_epoch=new.initial_epoch,
        parent_number=new.parent_number,
        bracket=new.bracket,
        rung=new.rung,
    )


class _OneAtATime(ABC):
    """Plans trials one by one, each seeing the ones planned before it."""

    @abstractmethod
    def next_trial(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> NewTrial | None:
        """The next trial to queue, or None when there is none to queue now."""

    def capped(self, context: StudyContext, history: Sequence[TrialView]) -> bool:
        return context.max_trials is not None and len(history) >= context.max_trials

    def plan(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler, slots: int) -> list[NewTrial]:
        view = list(history)
        planned: list[NewTrial] = []
        while len(planned) < slots and not self.capped(context, view):
            new = self.next_trial(context, view, sampler)
            if new is None:
                break
            planned.append(new)
            view.append(_as_view(new, len(view)))
        return planned

    def is_finished(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> bool:
        return self.capped(context, history) or self.next_trial(context, history, sampler) is None

    def to_stop(self, context: StudyContext, history: Sequence[TrialView]) -> list[int]:
        return []


class FullBudget(_OneAtATime):
    """Every trial trains up to max_epochs (the study's callbacks, such as EarlyStopping, may end it sooner)."""

    def next_trial(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> NewTrial | None:
        sampled = sampler.sample(context, history, 1)
        return NewTrial(sampled[0], context.max_epochs) if sampled else None

    def plan(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler, slots: int) -> list[NewTrial]:
        # One sampler call for the whole batch: a model-based sampler then fits its model once.
        count = min(slots, (context.max_trials or slots + len(history)) - len(history))
        if count <= 0:
            return []
        return [NewTrial(params, context.max_epochs) for params in sampler.sample(context, history, count)]


class Hyperband(_OneAtATime):
    """Synchronous Hyperband with Keras Tuner's semantics: the same brackets, rounds, sizes and epochs as
    ``keras_tuner.Hyperband(max_epochs, factor, hyperband_iterations)``.

    ``bracket`` on a trial is the bracket's instance number (0, 1, 2, ...): Keras Tuner's bracket number is
    ``num_brackets - 1 - bracket % num_brackets`` and its iteration ``bracket // num_brackets``. ``rung`` is
    the round. A promoted trial is a new trial whose parent is the promoted one; it continues from the
    parent's checkpoint (weights and optimizer state) and trains only the extra epochs.

    One deliberate difference: a failed trial counts as finished when deciding whether a round may promote
    (it is never promoted), so failures cannot stall a bracket forever as they can in Keras Tuner.
    """

    def __init__(self, factor: int = 3, iterations: int = 1, min_epochs: int = 1) -> None:
        self.factor = factor
        self.iterations = iterations
        self.min_epochs = min_epochs

    def num_brackets(self, max_epochs: int) -> int:
        epochs, brackets = float(max_epochs), 0
        while epochs >= self.min_epochs:
            epochs /= self.factor
            brackets += 1
        return brackets

    def size(self, max_epochs: int, bracket_num: int, round_num: int) -> int:
        bracket0_end_size = math.ceil(1 + math.log(max_epochs, self.factor))
        return math.ceil(bracket0_end_size / (bracket_num + 1) * self.factor ** (bracket_num - round_num))

    def epochs(self, max_epochs: int, bracket_num: int, round_num: int) -> int:
        return math.ceil(max_epochs / self.factor ** (bracket_num - round_num))

    def total_trials(self, max_epochs: int) -> int:
        per_iteration = sum(
            self.size(max_epochs, b, r) for b in range(self.num_brackets(max_epochs)) for r in range(b + 1)
        )
        return per_iteration * self.iterations

    def next_trial(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> NewTrial | None:
        max_epochs = context.max_epochs
        count = self.num_brackets(max_epochs)
        rounds: dict[int, dict[int, list[TrialView]]] = {}
        for trial in history:
            if trial.bracket is not None and trial.rung is not None:
                rounds.setdefault(trial.bracket, {}).setdefault(trial.rung, []).append(trial)

        def bracket_num(instance: int) -> int:
            return count - 1 - instance % count

        def new_config(instance: int) -> NewTrial | None:
            sampled = sampler.sample(context, history, 1)
            if not sampled:
                return None
            budget = self.epochs(max_epochs, bracket_num(instance), 0)
            return NewTrial(sampled[0], budget, bracket=instance, rung=0)

        for instance in sorted(rounds):
            b = bracket_num(instance)
            by_round = rounds[instance]
            if len(by_round.get(b, [])) == self.size(max_epochs, b, b):
                continue  # bracket complete
            if len(by_round.get(0, [])) < self.size(max_epochs, b, 0):
                return new_config(instance)
            for r in range(1, b + 1):
                promoted = {t.parent_number for t in by_round.get(r, [])}
                waiting = [t for t in by_round.get(r - 1, []) if t.number not in promoted and t.finished]
                candidates = _completed(waiting)
                if candidates and len(waiting) > self.size(max_epochs, b, r - 1) - self.size(max_epochs, b, r):
                    best = _best_first(candidates, context.direction)[0]
                    return NewTrial(
                        dict(best.params),
                        self.epochs(max_epochs, b, r),
                        initial_epoch=self.epochs(max_epochs, b, r - 1),
                        parent_number=best.number,
                        bracket=instance,
                        rung=r,
                    )
        current = max(rounds) if rounds else -1
        if current >= 0 and bracket_num(current) == 0 and current // count + 1 >= self.iterations:
            return None  # the last bracket of the last iteration: wait for it, then stop
        return new_config(current + 1)


class ASHA(_OneAtATime):
    """Asynchronous successive halving (Li et al. 2018): rungs at min_epochs * factor^k epochs (the top rung
    at max_epochs). Whenever a worker needs work, promote any trial in the top 1/factor of its rung that was
    not promoted yet (highest rung first), never waiting for a rung to fill; otherwise start a new
    configuration. ``max_trials`` counts configurations (rung 0), not promotions."""

    def __init__(self, factor: int = 3, min_epochs: int = 1) -> None:
        self.factor = factor
        self.min_epochs = min_epochs

    def rung_epochs(self, max_epochs: int) -> list[int]:
        epochs = []
        value = self.min_epochs
        while value < max_epochs:
            epochs.append(value)
            value *= self.factor
        return [*epochs, max_epochs]

    def capped(self, context: StudyContext, history: Sequence[TrialView]) -> bool:
        return False  # promotions never count against max_trials; next_trial checks configurations

    def next_trial(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> NewTrial | None:
        rungs = self.rung_epochs(context.max_epochs)
        for k in range(len(rungs) - 2, -1, -1):
            at_rung = _completed([t for t in history if t.rung == k])
            promoted = {t.parent_number for t in history if t.rung == k + 1}
            top = _best_first(at_rung, context.direction)[: len(at_rung) // self.factor]
            for trial in top:
                if trial.number not in promoted:
                    return NewTrial(
                        dict(trial.params),
                        rungs[k + 1],
                        initial_epoch=rungs[k],
                        parent_number=trial.number,
                        bracket=0,
                        rung=k + 1,
                    )
        configurations = sum(t.rung == 0 for t in history)
        if context.max_trials is not None and configurations >= context.max_trials:
            return None
        sampled = sampler.sample(context, history, 1)
        return NewTrial(sampled[0], rungs[0], bracket=0, rung=0) if sampled else None


class MedianStopping:
    """Wraps a scheduler: stop a running trial whose best objective so far is worse than the median of the
    other trials' best objective at the same epoch (Optuna's MedianPruner rule), after ``grace_epochs`` and
    once ``min_trials`` trials have reported that epoch."""

    def __init__(self, inner: Scheduler, grace_epochs: int = 1, min_trials: int = 5) -> None:
        self.inner = inner
        self.grace_epochs = grace_epochs
        self.min_trials = min_trials

    def plan(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler, slots: int) -> list[NewTrial]:
        return self.inner.plan(context, history, sampler, slots)

    def is_finished(self, context: StudyContext, history: Sequence[TrialView], sampler: Sampler) -> bool:
        return self.inner.is_finished(context, history, sampler)

    def to_stop(self, context: StudyContext, history: Sequence[TrialView]) -> list[int]:
        pick = min if context.direction == "min" else max

        def best_until(trial: TrialView, epoch: int) -> float | None:
            values = [v for e, v in trial.curve.items() if e <= epoch]
            return pick(values) if values else None

        stop = []
        for trial in history:
            if trial.state != "RUNNING" or not trial.curve:
                continue
            epoch = max(trial.curve)
            if epoch < self.grace_epochs:
                continue
            others = [
                value
                for other in history
                if other.number != trial.number
                and other.finished
                and max(other.curve, default=0) >= epoch
                and (value := best_until(other, epoch)) is not None
            ]
            mine = best_until(trial, epoch)
            if len(others) < self.min_trials or mine is None:
                continue
            median = statistics.median(others)
            if (mine < median) if context.direction == "max" else (mine > median):
                stop.append(trial.number)
        return stop
