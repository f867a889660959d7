"""``Store``: the one object callers hold, a facade over the store's concerns, one file each:

==========================  ==============================================================================
:mod:`.studies`             create and read studies, their state and space
:mod:`.queue`               the trial queue: add, claim, heartbeat, epochs, checkpoints, finish, release, retry
:mod:`.states`              the trial (and final job) state machine: ``TRANSITIONS``
:mod:`.planning`            the coordinator's reads (history, counts, failures) and leases
:mod:`.final_jobs`          promotions: queue, claim, heartbeat, finish, fail, requeue
:mod:`.workers`             worker rows
:mod:`.reads`               trials, the best trial, curves, attempts, artifacts, final job reads, snapshots
:mod:`.overview`            live views across studies: progress, workers, a page of trials, a study's fingerprint
:mod:`.statements`          the prebuilt Core statements of the hot path
:mod:`.records`             the frozen records handed out (``*Record``) and taken in (``New*``)
:mod:`.database`            the engine's three connection paths and ``retrying``
==========================  ==============================================================================

Example::

    store = open_store("sqlite:///hpsearch.db")
    study = store.study("mnist")
    print(store.best_trial(study))
"""

from __future__ import annotations

from hpsearch.store.database import Database
from hpsearch.store.final_jobs import FINAL_JOB_MAX_ATTEMPTS, FinalJobs
from hpsearch.store.overview import Overview
from hpsearch.store.planning import Planning
from hpsearch.store.queue import HeartbeatAnswer, Queue
from hpsearch.store.reads import Reads
from hpsearch.store.records import ClaimedTrial
from hpsearch.store.statements import claim_query, param_values
from hpsearch.store.studies import Studies
from hpsearch.store.workers import Workers


class Store(Studies, Queue, Planning, FinalJobs, Workers, Reads, Overview, Database):
    """Every query of hpsearch, one concern per base class. With ``retry_seconds`` (workers and coordinators)
    the methods they call retry a lost connection for that long (see :func:`hpsearch.store.database.retrying`).

    Example: ``Store(make_engine("sqlite:///hpsearch.db"), retry_seconds=60).claim(worker_id)``."""


__all__ = ["FINAL_JOB_MAX_ATTEMPTS", "ClaimedTrial", "HeartbeatAnswer", "Store", "claim_query", "param_values"]
