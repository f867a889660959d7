"""A fork server holding a JAX runtime is refused when the worker starts it, instead of deadlocking a trial."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.execution.forksafety import FORK_UNSAFE_EXIT, ForkUnsafe, check_probe

# Runs in a fresh interpreter: multiprocessing keeps one fork server per process, started with the first preload.
SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from hpsearch.execution import worker
from hpsearch.execution.forksafety import ForkUnsafe
worker.FORK_SERVER_PRELOAD = [*worker.FORK_SERVER_PRELOAD, sys.argv[2]]
try:
    worker.Worker(None)._process_context()
except ForkUnsafe as exc:
    print("REFUSED:", exc)
    sys.exit(3)
print("STARTED")
"""


def _run(tmp_path: Path, module: str, body: str, backend: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / f"{module}.py").write_text(body)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), module],
        capture_output=True,
        text=True,
        timeout=240,  # a hang fails the test instead of hanging it
        env=env,
        cwd=tmp_path,
    )


def test_the_probe_is_refused_only_with_its_exit_code() -> None:
    check_probe(0, ["x"])
    with pytest.raises(ForkUnsafe, match="initialised a JAX runtime while preloading x"):
        check_probe(FORK_UNSAFE_EXIT, ["x"])


@pytest.mark.slow  # a fresh process that imports jax: among the suite's longest
def test_a_preload_that_marks_a_jax_backend_initialised_is_refused(tmp_path: Path) -> None:
    """Any backend: a stand-in for jax's bridge module with a created backend, as JAX leaves it."""
    fake = (
        "import sys, types\n"
        "bridge = types.ModuleType('jax._src.xla_bridge')\n"
        "bridge._backends = {'cpu': object()}\n"
        "sys.modules['jax._src.xla_bridge'] = bridge\n"
    )
    done = _run(tmp_path, "fake_jax_preload", fake, os.environ.get("KERAS_BACKEND", "tensorflow"))
    assert done.returncode == 3, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "fake_jax_preload" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)")
def test_a_preload_that_initialises_jax_fails_loudly_and_the_default_preload_starts(tmp_path: Path) -> None:
    done = _run(tmp_path, "jax_preload", "import jax.numpy as jnp\nONE = jnp.ones(1)\n", "jax")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "jax_preload" in done.stdout
    # keras on jax alone (the worker's own preload) creates no backend: the server starts.
    done = _run(tmp_path, "plain_preload", "VALUE = 1\n", "jax")
    assert done.returncode == 0 and "STARTED" in done.stdout, done.stderr[-2000:]
