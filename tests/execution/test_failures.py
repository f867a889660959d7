"""Which child failures recur in every trial (the study fails at the first one) and which end one trial."""

from __future__ import annotations

import threading

import pytest

from hpsearch.errors import UserCodeError
from hpsearch.execution.failures import first_line, recurs_in_every_trial
from hpsearch.execution.protocol import ChildFailed


@pytest.mark.parametrize(
    ("error", "recurs"),
    [
        (ModuleNotFoundError("No module named 'sklearn'"), True),
        (UserCodeError("m.py:build", "import failed: ImportError: x"), True),
        (
            ValueError(
                "Arguments `target` and `output` must have the same rank (ndim). Received: target.shape=(None,)"
            ),
            True,
        ),
        (ValueError("Received a label value of 10 which is outside the valid range of [0, 10)."), True),
        (ValueError("Negative dimension size caused by subtracting 5 from 3"), False),  # one bad configuration
        (MemoryError(), False),
        (RuntimeError("nan loss"), False),
    ],
)
def test_recurring_errors(error: BaseException, recurs: bool) -> None:
    assert recurs_in_every_trial(error) is recurs


def test_an_unlogged_objective_is_a_recurring_failure() -> None:
    from hpsearch.execution.training import Reporter, TrialFailed, TrialTask

    task = TrialTask(
        study_name="s", number=0, params={}, space={"space": []}, hypermodel="m.py:b", base_dir="/x",
        data_dir="/x", objectives=["val_acc"], budget_epochs=1, initial_epoch=0, seed=0, checkpoint_dir="/x",
        artifact_root="/x",
    )  # fmt: skip
    reporter = Reporter(task, conn=None, stop=threading.Event())
    with pytest.raises(TrialFailed, match="'val_acc' is not logged") as caught:
        reporter.report(0, {"loss": 1.0, "val_accuracy": 0.5})
    assert caught.value.recurring


def test_a_failure_is_not_recurring_unless_said_and_its_first_line() -> None:
    assert not ChildFailed("nan loss at epoch 1").recurring
    assert first_line("ValueError: x\nTraceback (most recent call last):\n") == "ValueError: x"
