"""The one supervisor of trial and final-job children, against real child processes that send typed messages
(no keras: the children here are plain functions)."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import pytest

from hpsearch.execution.protocol import ChildFailed, EpochEnded, Message, TrialDone
from hpsearch.execution.supervisor import Beat, Ending, Supervisor

CONTEXT = multiprocessing.get_context("fork")


def reports_two_epochs(task: Any, conn: Any, stop: Any) -> None:
    conn.send(EpochEnded(1, {"loss": 1.0}))
    conn.send(EpochEnded(2, {"loss": 0.5}))
    conn.send(TrialDone({"units": 8}, []))
    conn.close()


def dies(task: Any, conn: Any, stop: Any) -> None:
    conn.send(EpochEnded(1, {"loss": 1.0}))
    os._exit(3)


def trains_until_stopped(task: Any, conn: Any, stop: Any) -> None:
    epoch = 0
    while not stop.is_set():
        epoch += 1
        conn.send(EpochEnded(epoch, {"loss": 1.0 / epoch}))
        time.sleep(0.05)
    conn.send(ChildFailed("stopped") if task == "fail" else TrialDone({}, []))
    conn.close()


def hangs(task: Any, conn: Any, stop: Any) -> None:
    time.sleep(60)


class Recording(Supervisor):
    def __init__(self, answers: list[Beat], **options: Any) -> None:
        super().__init__(CONTEXT, heartbeat_seconds=0.05, **options)
        self.answers = answers
        self.received: list[Message] = []

    def beat(self) -> Beat:
        return self.answers.pop(0) if self.answers else "continue"

    def receive(self, message: Message) -> bool:
        self.received.append(message)
        return True


def test_progress_is_received_in_order_and_the_result_ends_the_run() -> None:
    run = Recording([])
    ending = run.supervise(reports_two_epochs, None)
    assert ending == Ending(result=TrialDone({"units": 8}, []))
    assert run.received == [EpochEnded(1, {"loss": 1.0}), EpochEnded(2, {"loss": 0.5})]


def test_a_child_that_dies_without_a_result_is_described_by_its_exit_code() -> None:
    ending = Recording([]).supervise(dies, None)
    assert ending.result is None and not ending.lost
    assert ending.exit == "trial process exited with code 3 without reporting a result"


@pytest.mark.parametrize(("answer", "task"), [("stop", "done"), ("pause", "fail")])
def test_a_stop_or_pause_request_reaches_the_child_and_is_reported(answer: Beat, task: str) -> None:
    ending = Recording(["continue", answer]).supervise(trains_until_stopped, task)
    assert ending.request == answer
    assert isinstance(ending.result, TrialDone if task == "done" else ChildFailed)


def test_a_lost_lease_kills_the_child() -> None:
    run = Recording(["lost"])
    ending = run.supervise(hangs, None)
    assert ending == Ending(lost=True)


def test_a_child_past_its_time_limit_is_killed() -> None:
    ending = Recording([], timeout=0.5).supervise(hangs, None)
    assert ending.timed_out and ending.result is None


def test_a_reported_child_is_handed_over_to_be_reaped_later() -> None:
    exiting: list[Any] = []
    ending = Recording([], exiting=exiting).supervise(reports_two_epochs, None)
    assert isinstance(ending.result, TrialDone) and len(exiting) == 1
    exiting[0].join(10)
    assert exiting[0].exitcode == 0
