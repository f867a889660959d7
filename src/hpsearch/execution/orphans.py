"""No process outlives what it belongs to (issue 24, "Orphans").

- A worker started by ``hpsearch run`` stops when that ``run`` dies, even by SIGKILL: the parent holds the
  write end of a pipe (:class:`ParentLink`) and the worker a thread blocked reading the other end
  (:func:`watch_parent`); the kernel closes the write end when the parent dies, however it dies, and the read
  returns. The worker then stops as on SIGTERM: its trial goes back to the queue uncharged and it
  deregisters. Why a pipe and not polling ``os.getppid()``: no polling interval, no missed death, and no
  confusion with a subreaper that adopts the worker.
- A trial's child runs in a process group of its own (:func:`run_in_own_group`), so whatever it forks (data
  loader processes, a user's subprocess, a daemon that double-forked) is found by its group and killed when
  the trial ends: by the child itself once it returns (:func:`kill_rest_of_group`), and by the supervisor
  (:func:`end_group`) when the child is killed or abandoned.

Example::

    link = ParentLink()
    proc = subprocess.Popen(command, env={**os.environ, **link.child_env()}, pass_fds=link.pass_fds)
    link.children_started()
    ...
    link.close()  # or die: the worker stops either way
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("hpsearch.execution.orphans")

PARENT_FD_ENV = "HPSEARCH_PARENT_FD"


class ParentLink:
    """The parent's side: a pipe whose read end each child inherits and whose write end only the parent
    holds (``os.pipe`` descriptors are not inherited unless passed)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.read_fd,)

    def child_env(self) -> dict[str, str]:
        return {PARENT_FD_ENV: str(self.read_fd)}

    def children_started(self) -> None:
        """Close the parent's copy of the read end (the children have theirs)."""
        with contextlib.suppress(OSError):
            os.close(self.read_fd)

    def close(self) -> None:
        """Tell every child its parent is done (they stop); also what the kernel does when the parent dies."""
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def watch_parent(on_gone: Callable[[], None] | None = None) -> threading.Thread | None:
    """In a process started with :meth:`ParentLink.child_env`: a daemon thread that calls ``on_gone`` (by
    default: SIGTERM to this process, which stops a worker cleanly) once the parent is gone. Returns the
    thread, or None when this process was not started with a link."""
    raw = os.environ.pop(PARENT_FD_ENV, None)  # not handed on to this process's own children
    if raw is None:
        return None
    fd = int(raw)
    os.set_inheritable(fd, False)

    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    def wait() -> None:
        try:
            while os.read(fd, 1):  # the parent never writes: only end-of-file (its death) returns
                pass
        except OSError:
            pass
        log.warning("the `hpsearch run` that started this worker is gone; stopping")
        (on_gone or terminate)()

    thread = threading.Thread(target=wait, name="hpsearch-parent-watch", daemon=True)
    thread.start()
    return thread


def run_in_own_group(target: Callable[..., Any], *args: Any) -> None:
    """A trial child's entry point: make it the leader of a new process group, run ``target(*args)``, then
    kill whatever it left behind in its group."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    try:
        target(*args)
    finally:
        kill_rest_of_group()


def kill_rest_of_group() -> int:
    """SIGKILL every other process of this process's group (Linux: found through /proc); returns how many."""
    me = os.getpid()
    group = os.getpgid(0)
    if group != me:  # not a group of its own: leave the others alone
        return 0
    killed = 0
    for entry in Path("/proc").iterdir() if sys.platform.startswith("linux") else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            # Field 5 of /proc/<pid>/stat is the process group; the name (field 2) may hold spaces and ")".
            fields = entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return killed


def end_group(leader_pid: int | None) -> None:
    """SIGKILL the process group a trial child led (it, and anything it forked); nothing if none is left."""
    if leader_pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader_pid, signal.SIGKILL)
