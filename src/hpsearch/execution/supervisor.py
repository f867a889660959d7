"""One child process followed by its worker: start it, read its messages, renew the lease, relay a stop or
pause request, enforce a time limit, and say how it ended. Trial runs and final-job runs both use it; what
differs (how the lease is renewed, what a progress message writes) are two hook methods.
"""

from __future__ import annotations

import abc
import signal
import time
from dataclasses import dataclass
from typing import Any, Literal

from hpsearch.execution.orphans import end_group, run_in_own_group
from hpsearch.execution.protocol import ChildFailed, FinalResult, Message, Result, TrialDone

# What renewing the lease answers: go on; another worker owns the job now; stop (prune) it; pause it (its study
# was stopped: the job goes back to the queue).
Beat = Literal["continue", "lost", "stop", "pause"]


def describe_exit(exitcode: int | None) -> str:
    """Why a child that sent no result ended, from its exit code.

    >>> describe_exit(-9)
    'trial process killed by SIGKILL (out of memory or a crash in native code?)'
    """
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"trial process killed by {name} (out of memory or a crash in native code?)"
    return f"trial process exited with code {exitcode} without reporting a result"


@dataclass(frozen=True)
class Ending:
    """How a supervised child ended: with its ``result``; ``lost`` (another worker owns the job: the child was
    killed); ``timed_out`` (killed past its limit); or none of these (``exit`` says why it died). ``request`` is
    a stop or pause the lease renewal relayed while it ran.

    >>> Ending(result=ChildFailed("nan loss at epoch 1")).lost
    False
    """

    result: Result | None = None
    lost: bool = False
    timed_out: bool = False
    request: Literal["stop", "pause"] | None = None
    exit: str = ""


class Supervisor(abc.ABC):
    """Runs ``target(task, pipe, stop_event)`` in a child of ``context`` and follows it until it ends.

    Subclasses say how to renew the lease (:meth:`beat`) and what a progress message writes (:meth:`receive`).
    The first renewal is due at ``first_beat_at`` (``time.monotonic()``), then every ``heartbeat_seconds``.
    A child that sent its result is joined, or handed to ``exiting`` to be reaped later (so its teardown
    overlaps the next child's start); any other child still alive at the end is killed.

    >>> class Quiet(Supervisor):
    ...     def beat(self) -> Beat:
    ...         return "continue"
    >>> ending = Quiet(context, heartbeat_seconds=5.0).supervise(target, task)  # doctest: +SKIP
    """

    def __init__(
        self,
        context: Any,
        *,
        heartbeat_seconds: float,
        first_beat_at: float | None = None,
        timeout: float | None = None,
        exiting: list[Any] | None = None,
    ) -> None:
        self.context = context
        self.heartbeat_seconds = heartbeat_seconds
        self.first_beat_at = first_beat_at
        self.timeout = timeout
        self.exiting = exiting

    @abc.abstractmethod
    def beat(self) -> Beat:
        """Renew the lease; say whether to go on (each kind of run renews its own lease)."""

    def receive(self, message: Message) -> bool:
        """Apply one progress message; False when this worker no longer owns the job."""
        return True

    def started(self) -> None:
        """Called once the child runs (a trial reaps its predecessors' exiting processes here)."""
        return None

    def supervise(self, target: Any, task: Any) -> Ending:
        receiver, sender = self.context.Pipe(duplex=False)
        stop = self.context.Event()
        # In a process group of its own: whatever the trial forks ends with it (see execution.orphans).
        child = self.context.Process(target=run_in_own_group, args=(target, task, sender, stop))
        child.start()
        sender.close()
        self.started()
        ending: Ending | None = None
        try:
            ending = self._follow(child, receiver, stop)
            return ending
        finally:
            if ending is not None and ending.result is not None and self.exiting is not None:
                self.exiting.append(child)
            else:
                if child.is_alive():  # abandoned, or an interrupt (SIGINT/SIGTERM) is on its way up
                    child.kill()
                    child.join()
                end_group(child.pid)  # what it forked: a killed child could not clean up after itself

    def _follow(self, child: Any, receiver: Any, stop: Any) -> Ending:
        deadline = time.monotonic() + self.timeout if self.timeout else None
        next_beat = time.monotonic() if self.first_beat_at is None else self.first_beat_at
        request: Literal["stop", "pause"] | None = None
        while True:
            if deadline is not None and time.monotonic() > deadline and child.is_alive():
                child.kill()
                child.join()
                return Ending(timed_out=True, request=request)
            if receiver.poll(0.2):
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                match message:
                    case TrialDone() | FinalResult() | ChildFailed():
                        if self.exiting is None:
                            child.join()
                        return Ending(result=message, request=request)
                    case _ if not self.receive(message):
                        return self._abandon(child, request)
            elif not child.is_alive() and not receiver.poll(0):
                break
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_seconds
                answer = self.beat()
                if answer == "lost":
                    return self._abandon(child, request)
                if answer in ("stop", "pause") and not stop.is_set():
                    request = "stop" if answer == "stop" else "pause"
                    stop.set()
        child.join()  # its exit code says why it ended
        return Ending(request=request, exit=describe_exit(child.exitcode))

    @staticmethod
    def _abandon(child: Any, request: Literal["stop", "pause"] | None) -> Ending:
        child.kill()
        child.join()
        return Ending(lost=True, request=request)
