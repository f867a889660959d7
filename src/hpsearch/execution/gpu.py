"""GPUs for workers: which are visible, how K trial processes share one, and one worker per GPU.

Sharing: every backend grabs (nearly) all of a GPU's memory by default, so a second trial process on it fails
to start, and even one worker's next trial can collide with the last one's exit (its memory not yet freed).
So a worker given a GPU sets, before its fork server starts (children inherit its environment):

- TensorFlow: ``TF_FORCE_GPU_ALLOW_GROWTH=true`` (allocate as needed);
- JAX: ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` and ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = its share (a cap);
- torch: its share in ``HPSEARCH_TORCH_MEMORY_FRACTION``, which the trial's process applies with
  ``torch.cuda.set_per_process_memory_fraction`` (torch has no environment variable for it).

A share is 0.9 / K of the GPU (some room for the CUDA contexts themselves). A value the user already set in
the environment is kept. Nothing here imports a backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from hpsearch.errors import UsageError
from hpsearch.execution.backends import keras_backend

TORCH_FRACTION = "HPSEARCH_TORCH_MEMORY_FRACTION"
# What K processes may use of one GPU together; the rest is left to their CUDA contexts.
USABLE_SHARE = 0.9


def memory_settings(slots: int) -> dict[str, str]:
    """The environment that lets ``slots`` trial processes share one GPU (see the module).

    >>> memory_settings(4)["XLA_PYTHON_CLIENT_MEM_FRACTION"]
    '0.225'
    """
    share = f"{USABLE_SHARE / max(1, slots):.3g}"
    return {
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": share,
        TORCH_FRACTION: share,
    }


def share_gpu(slots: int) -> dict[str, str]:
    """Set :func:`memory_settings` in this process's environment, keeping any the user set; returns what
    is in effect."""
    for name, value in memory_settings(slots).items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in memory_settings(slots)}


def limit_torch_memory() -> None:
    """In a trial's process on the torch backend with a GPU: cap its memory at its share."""
    fraction = os.environ.get(TORCH_FRACTION)
    if not fraction or keras_backend() != "torch":
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(float(fraction))


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs a worker may use: those ``CUDA_VISIBLE_DEVICES`` names, else those ``nvidia-smi -L`` lists
    (its indices); none without either.

    >>> visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"})
    ['2', '3']
    >>> visible_gpus({"CUDA_VISIBLE_DEVICES": ""})
    []
    """
    env = os.environ if environ is None else environ
    named = env.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        gpus = [g.strip() for g in named.split(",") if g.strip()]
        return [] if gpus in ([], ["-1"]) else gpus
    tool = shutil.which("nvidia-smi", path=env.get("PATH"))
    if tool is None:
        return []
    try:
        listed = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
    return [str(index) for index in range(count)] if listed.returncode == 0 else []


def no_gpu_error() -> UsageError:
    return UsageError(
        "--gpu all", "no GPU is visible on this machine (CUDA_VISIBLE_DEVICES names none, nvidia-smi lists none)"
    )


def run_per_gpu(gpus: Sequence[str], worker_arguments: Sequence[str], env: dict[str, str]) -> int:
    """``--gpu all``: one ``hpsearch worker --gpu G ...`` process per GPU (a process each, because a fork
    server's children all see the one CUDA_VISIBLE_DEVICES it started with), until all exit. An interrupt is
    passed on to them (each hands its trials back) before this returns. Returns the worst exit code."""
    processes = [
        subprocess.Popen([sys.executable, "-m", "hpsearch", "worker", "--gpu", gpu, *worker_arguments], env=env)
        for gpu in gpus
    ]
    try:
        return max(process.wait() for process in processes)
    except KeyboardInterrupt:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60.0
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        raise
