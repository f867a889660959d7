"""The entry points of a worker's child processes: a trial, a final job, the study's data loader. Nothing
here imports keras at import time.

Why a module of its own: the worker's main process only claims, renews leases and writes reports; keras (and
TensorFlow: seconds of CPU and hundreds of MB) belongs to its fork server, which imports it once for every
child (``FORK_SERVER_PRELOAD``). A Process target is pickled by reference, so the parent imports the module
that defines it: these functions import the training code only when they run, in a child of the fork
server, where it is already loaded. (Not in :mod:`hpsearch.execution.tasks`: the training modules import the
task classes, and a module importing them back would make a cycle.) The study's data is loaded in such a
child too: a loader module may import keras itself.

>>> receiver, sender = context.Pipe(duplex=False)  # doctest: +SKIP
>>> context.Process(target=load_data, args=("d.py:load", ".", "/tmp/data-1", sender)).start()  # doctest: +SKIP
>>> receiver.recv()  # None, or why loading failed  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpsearch.execution.tasks import FinalTask, TrialTask


def train_trial(task: TrialTask, conn: Any, stop: Any) -> None:
    """A trial's child: :func:`hpsearch.execution.training.run_trial`."""
    from hpsearch.execution.training import run_trial

    run_trial(task, conn, stop)


def run_final(task: FinalTask, conn: Any, stop: Any) -> None:
    """A final job's child: :func:`hpsearch.execution.finaljob.run_final_job`."""
    from hpsearch.execution.finaljob import run_final_job

    run_final_job(task, conn, stop)


def load_data(ref: str, base_dir: str, data_dir: str, conn: Any) -> None:
    """Load a study's data with its loader and write it as .npy files into ``data_dir`` (what every child
    memory-maps); send None, or the loader's error as one line (the worker fails the trial with it)."""
    from hpsearch.execution.loading import load_dataset, save_dataset

    try:
        save_dataset(load_dataset(ref, base_dir), Path(data_dir))
    except Exception as exc:  # the user's loader: any error is the trial's, told in one line
        conn.send(str(exc) or type(exc).__name__)
    else:
        conn.send(None)
    finally:
        conn.close()
