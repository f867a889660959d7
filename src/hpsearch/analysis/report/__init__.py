"""The study report: one self-contained HTML page about a study, for analysts.

``render_report(store, "mnist_mlp")`` returns the page: a summary, the optimisation history, parallel
coordinates, parameter importance (fANOVA through Optuna), learning curves with Hyperband/ASHA rungs and
promotions, slice plots, a worker timeline, the final model and a table of every trial.

Three steps, one module each: :mod:`.data` reads the study from the store once into frozen dataclasses (the
only module that talks to the store), :mod:`.figures` (with :mod:`.importance`) draws them with plotly, and
:mod:`.page` lays them out in HTML with every user string escaped and no network access.
"""

from __future__ import annotations

from hpsearch.analysis.report.data import load_report_data
from hpsearch.analysis.report.page import render_page
from hpsearch.store import Store


def render_report(store: Store, study_name: str) -> str:
    """The whole report of a study as one self-contained HTML page (no network access needed or made).

    Example::

        >>> from hpsearch import open_store
        >>> page = render_report(open_store("sqlite:///hpsearch.db"), "mnist_mlp")
        >>> Path("report.html").write_text(page, encoding="utf-8")
    """
    return render_page(load_report_data(store, study_name))


__all__ = ["render_report"]
