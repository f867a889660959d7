"""The fork server must not hold a JAX runtime: children forked from one deadlock.

JAX starts threads (its runtime, XLA's thread pools) the first time it creates a backend: ``jax.devices()``,
any array. ``fork()`` copies only the forking thread, so a child of a process that did so waits forever on
locks those threads held. Importing keras with ``KERAS_BACKEND=jax`` creates no backend; a preloaded module
(or a hypermodel module imported at preload) that does is caught here, when the worker starts its fork server,
and the worker stops with a message instead of hanging its first trial.
"""

from __future__ import annotations

import os
import sys

# The exit code of the fork server's first child when the server holds a JAX runtime.
FORK_UNSAFE_EXIT = 75


class ForkUnsafe(RuntimeError):
    """The fork server initialised a runtime whose threads do not survive ``fork()``."""


def jax_runtime_initialised() -> bool:
    """Whether this process created a JAX backend, read without taking JAX's locks (this runs in a fork,
    where a lock another thread held stays held).

    >>> jax_runtime_initialised()  # in a process that never imported jax
    False
    """
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None)) if bridge is not None else False


def probe_fork_server() -> None:
    """The fork server's first child: exits with :data:`FORK_UNSAFE_EXIT` if the server holds a JAX runtime."""
    if jax_runtime_initialised():
        os._exit(FORK_UNSAFE_EXIT)


def check_probe(exitcode: int | None, preload: list[str]) -> None:
    """Raise :class:`ForkUnsafe` when the probe found a JAX runtime in the fork server.

    >>> check_probe(0, ["hpsearch.execution.training"])
    """
    if exitcode == FORK_UNSAFE_EXIT:
        raise ForkUnsafe(
            f"the worker's fork server initialised a JAX runtime while preloading {', '.join(preload)}: trials "
            "forked from it would deadlock; create JAX arrays or call jax.devices() inside build()/fit(), "
            "not at import time"
        )
