"""The worker's own guard on names the database cannot hold (issue 24): a metric or parameter name over the
limit fails its trial with the reason; nothing reaches the database's name columns, the worker goes on."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import MagicMock

from hpsearch.execution.protocol import EpochEnded, TrialDone
from hpsearch.execution.supervisor import Ending
from hpsearch.execution.worker import _TrialRun
from hpsearch.store import TrialState


def _run() -> _TrialRun:
    run = object.__new__(_TrialRun)
    run.store = MagicMock()
    run.worker = SimpleNamespace(id=5)  # type: ignore[assignment]
    run.claimed = SimpleNamespace(trial_id=11, number=0, params={"units": 4})  # type: ignore[assignment]
    study = SimpleNamespace(id=1, name="s", objectives=[], objective_name="val_accuracy", direction="max")
    run.cached = SimpleNamespace(study=study)  # type: ignore[assignment]
    run.task = SimpleNamespace(space={"space": []})
    run.refused = None
    run.attempt = 1  # the fencing token its claim handed it
    return run


def test_a_metric_name_over_the_limit_stops_the_child_and_fails_the_trial() -> None:
    run = _run()
    assert run.receive(EpochEnded(1, {"loss": 0.5, "m" * 201: 1.0})) is False
    run.store.record_epoch.assert_not_called()
    run.conclude(Ending(lost=True))  # the supervisor stopped the child as for a lost lease
    run.store.finish.assert_called_once()
    trial_id, worker_id, state, reason, params = run.store.finish.call_args.args
    assert (trial_id, worker_id, state, params) == (11, 5, TrialState.FAILED, {})
    assert reason.startswith("metric name 'mmm") and "201 characters; at most 200" in reason


def test_a_metric_name_at_the_limit_is_written() -> None:
    run = _run()
    run.store.record_epoch.return_value = True
    assert run.receive(EpochEnded(1, {"m" * 200: 1.0})) is True
    run.store.record_epoch.assert_called_once()


def test_a_parameter_declared_in_fit_over_the_limit_fails_the_trial() -> None:
    run = _run()
    run.conclude(Ending(result=TrialDone({"units": 4, "p" * 201: 1}, [])))
    state, reason = run.store.finish.call_args.args[2:4]
    assert state == TrialState.FAILED and reason.startswith("parameter name 'ppp")
    run.store.extend_space.assert_not_called()
