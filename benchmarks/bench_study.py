"""The study file the worker benchmarks run (benchmarks/worker_overhead.py, benchmarks/slots.py): random search
over a hypermodel and its loader, with the run's trial count, epochs and batch size, on a fresh database.

    >>> write_study(Path("/tmp/w/s.toml"), name="s", module="/tmp/w/m.py", hypermodel="build",  # doctest: +SKIP
    ...             data="load_data", trials=12, epochs=3, batch_size=32)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

STUDY = """
[study]
name = {name}
hypermodel = {hypermodel}
data = {data}
objective = "val_accuracy"
seed = 3

[search]
algorithm = "random"
max_trials = {trials}
max_epochs = {epochs}

[fit]
batch_size = {batch_size}
"""


def write_study(
    path: Path,
    *,
    name: str,
    module: str | Path,
    hypermodel: str,
    data: str,
    trials: int,
    epochs: int,
    batch_size: int,
    run: Mapping[str, int | float] | None = None,
) -> Path:
    """Write the study file (``[run]`` with ``run``'s settings, if any) to ``path`` and return it."""
    text = STUDY.format(
        name=json.dumps(name),
        hypermodel=json.dumps(f"{module}:{hypermodel}"),
        data=json.dumps(f"{module}:{data}"),
        trials=trials,
        epochs=epochs,
        batch_size=batch_size,
    )
    if run:
        text += "\n[run]\n" + "".join(f"{key} = {value}\n" for key, value in run.items())
    path.write_text(text)
    return path
