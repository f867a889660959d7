"""The ``hpsearch`` command: parse, call the Python API (:mod:`hpsearch.api`), print.

Each module registers its commands on the one Typer app: :mod:`~hpsearch.cli.studies` (create, run, stop,
resume, coordinator, worker, automl, gc, db), :mod:`~hpsearch.cli.results` (status, trials, best, show,
promote, models, report, export), :mod:`~hpsearch.cli.dashboard` (dashboard).
"""

from hpsearch.cli import dashboard, results, studies  # noqa: F401  (registers the commands)
from hpsearch.cli.app import app, main

__all__ = ["app", "main"]
