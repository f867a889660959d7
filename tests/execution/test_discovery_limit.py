"""Discovery's time limit (issue 24): a hypermodel that never returns ends `study create` with one line naming
it and the limit, a non-zero exit and no study row; the limit leaves the caller's own alarm as it was."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import hpsearch
from hpsearch.errors import UsageError, UserCodeError
from hpsearch.execution.discovery import DISCOVERY_TIMEOUT_ENV, discovery_timeout, time_limit
from hpsearch.store import open_store

from ..conftest import write_tiny_study
from ..test_bad_inputs import run_cli

# Three ways of never returning: a wait on an event nobody sets, a sleep, a busy loop.
BLOCKING = """

def build_waiting(hp):
    import threading
    threading.Event().wait()


def build_sleeping(hp):
    import time
    time.sleep(10**6)


def build_spinning(hp):
    while True:
        pass
"""


@pytest.fixture
def real_timer() -> Iterator[None]:
    """Whatever alarm the test runner set (pytest-timeout) is put back after the test."""
    handler, (delay, interval) = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    yield
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, delay, interval)


@pytest.mark.parametrize("build", ["build_waiting", "build_sleeping", "build_spinning"])
def test_a_hypermodel_that_never_returns_is_one_error_naming_it_and_the_limit(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: str
) -> None:
    path = write_tiny_study(tmp_path, extra_module=BLOCKING, build=build)
    monkeypatch.setenv(DISCOVERY_TIMEOUT_ENV, "0.5")
    with pytest.raises(UserCodeError) as raised:
        hpsearch.create_study(path, db=db_url)
    assert raised.value.where == f"tiny.py:{build}"
    assert "did not return within 0.5 s" in raised.value.what and DISCOVERY_TIMEOUT_ENV in raised.value.what
    store = open_store(db_url)
    try:
        assert store.studies() == []
    finally:
        store.engine.dispose()


def test_study_create_with_a_hanging_hypermodel_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tiny_study(tmp_path, extra_module=BLOCKING, build="build_waiting")
    monkeypatch.setenv(DISCOVERY_TIMEOUT_ENV, "0.5")
    code, _, err = run_cli(["study", "create", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: tiny.py:build_waiting: did not return within 0.5 s while hpsearch discovered the search space "
        f"(set {DISCOVERY_TIMEOUT_ENV} to more seconds, or 0 for no limit)"
    ]


def test_the_limit_comes_from_the_environment_and_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISCOVERY_TIMEOUT_ENV, raising=False)
    assert discovery_timeout() == 120.0
    monkeypatch.setenv(DISCOVERY_TIMEOUT_ENV, "7.5")
    assert discovery_timeout() == 7.5
    monkeypatch.setenv(DISCOVERY_TIMEOUT_ENV, "0")
    assert discovery_timeout() is None
    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv(DISCOVERY_TIMEOUT_ENV, bad)
        with pytest.raises(UsageError, match=DISCOVERY_TIMEOUT_ENV):
            discovery_timeout()


def test_a_body_in_time_leaves_the_callers_alarm_and_handler_as_they_were(real_timer: None) -> None:
    fired: list[int] = []

    def callers_handler(signum: int, _frame: object) -> None:
        fired.append(signum)

    signal.signal(signal.SIGALRM, callers_handler)
    signal.setitimer(signal.ITIMER_REAL, 300.0)
    with time_limit(60.0, "x.py:build"):
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 60.0  # ours, the sooner one, is armed
    assert signal.getsignal(signal.SIGALRM) is callers_handler
    assert 200.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 300.0  # the caller's, re-armed with what remains
    # A caller's alarm sooner than the limit is left alone: it fires, not ours.
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    with time_limit(60.0, "x.py:build"):
        assert signal.getsignal(signal.SIGALRM) is callers_handler
    assert not fired


def test_off_the_main_thread_the_body_runs_unbounded(real_timer: None) -> None:
    seen: list[object] = []

    def body() -> None:
        with time_limit(0.01, "x.py:build"):
            seen.append(signal.getitimer(signal.ITIMER_REAL))
            threading.Event().wait(0.05)
        seen.append("done")

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen[-1] == "done"
