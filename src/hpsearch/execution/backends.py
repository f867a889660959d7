"""Which Keras backend this process's trials train with, and its version, read without importing keras.

A worker records both in its ``workers`` row, and a study that sets ``[run] backend`` is claimed only by
workers of that backend. Keras decides the backend when it is first imported (in the fork server, not in the
worker): ``KERAS_BACKEND`` if set and not empty, else ``"backend"`` in ``$KERAS_HOME/keras.json`` (default
``~/.keras/keras.json``, or ``/tmp/.keras`` when the home directory is not writable), else tensorflow. The
same rules are read here, because importing keras in the worker costs seconds (and, with jax, risks
initialising it before the fork server forks); a test checks the answer against ``keras.backend.backend()``.
"""

from __future__ import annotations

import json
import multiprocessing.forkserver
import os
from importlib import metadata

BACKENDS = ("tensorflow", "jax", "torch")
# The distributions that provide each backend's package, most common first.
_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
    "jax": ("jax",),
    "torch": ("torch",),
}


def keras_backend(environ: dict[str, str] | None = None) -> str:
    """The backend keras will load in a process with this environment (default: this process's).

    >>> keras_backend({"KERAS_BACKEND": "jax"})
    'jax'
    """
    env = os.environ if environ is None else environ
    chosen = env.get("KERAS_BACKEND")
    if chosen:
        return chosen
    if "KERAS_HOME" in env:
        home = env["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.join(os.path.expanduser(home), "keras.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return "tensorflow"
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) and backend else "tensorflow"


def backend_version(backend: str) -> str | None:
    """The installed version of the backend's package, or None if it is not installed.

    >>> backend_version("no-such-backend") is None
    True
    """
    for distribution in _DISTRIBUTIONS.get(backend, (backend,)):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def worker_backend() -> tuple[str, str | None]:
    """(backend, version) of the trials this process's fork server will run."""
    backend = keras_backend()
    return backend, backend_version(backend)


def _fork_server_started() -> bool:
    """Whether this process's fork server runs (its keras, imported once, fixed the backend of every child)."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    return getattr(server, "_forkserver_pid", None) is not None


def use_backend_here(required: str | None) -> str | None:
    """Make the workers of this process (``promote --local``: a worker in this process) run the backend a study
    requires, as ``hpsearch run`` gives its local workers that backend; None when they will, else why not.

    The fork server reads ``KERAS_BACKEND`` when it starts, and the worker records it: so it is set for this
    process when no fork server runs yet. One already running keeps its backend: then the answer is a line
    saying how to run the job instead. A backend that is not installed is refused the same way.

    >>> use_backend_here(None) is None
    True
    """
    if required is None:
        return None
    if backend_version(required) is None:
        return f"requires the {required} backend ([run] backend), which is not installed here"
    current = keras_backend()
    if current == required:
        return None
    if _fork_server_started():
        return (
            f"requires the {required} backend ([run] backend) and this process's workers already run {current}: "
            f"run it from a new process (KERAS_BACKEND={required} is set for it), or queue it for a {required} "
            "worker (promote without --local)"
        )
    # Set for this whole process: its fork server, started next, keeps this backend for every later child.
    os.environ["KERAS_BACKEND"] = required
    return None
