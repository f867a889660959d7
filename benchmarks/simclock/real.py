"""Real training behind the simulated clock (MNIST-5k): the clock still decides when each epoch ends; the
values a search sees come from training the configuration.

Each configuration's validation curve is trained on demand and kept: the first job that needs epoch e of a
configuration trains it from its last kept epoch (restoring that epoch's weights and optimizer state, as
hpsearch's workers resume) up to the job's budget, and every later request is read from the curve. So a
method that continues a promoted trial (hpsearch, Keras Tuner, Optuna) and one that retrains each fidelity
from scratch (DEHB, SMAC3) see the same curve for the same configuration within a run, as they would with
a deterministic trainer, and each epoch of a configuration is trained once per run, not once per request.

>>> curves = LearningCurves(problem.session(1).__enter__())  # doctest: +SKIP
>>> curves.observe(Job({"units": 64}, 0, 3), 1)  # trains epochs 1..3, returns epoch 1's  # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

from simclock.clock import Job, Params
from sq_problems import Session


class LearningCurves:
    """Validation curves per configuration, trained when first needed (see the module's docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.curves: dict[str, tuple[list[float], Any]] = {}  # configuration -> (values, state after the last)
        self.epochs_trained = 0

    @staticmethod
    def _key(params: Params) -> str:
        return json.dumps(dict(params), sort_keys=True, default=str)

    def observe(self, job: Job, epoch: int) -> float:
        key = self._key(job.params)
        values, state = self.curves.get(key, ([], None))
        if epoch > len(values):
            more, state = self.session.train(
                dict(job.params), len(values), max(epoch, job.budget_epochs), state, lambda epoch, value: True
            )
            self.epochs_trained += len(more)
            values = values + more
            self.curves[key] = (values, state)
        return values[epoch - 1]

    def score(self, params: Params) -> float:
        """A configuration trained to max_epochs: its objective as hpsearch records it (its best epoch)."""
        values, _ = self.curves[self._key(params)]
        return self.session.trial_objective(values)
