"""A study driven through the store as two workers would drive it (claim, epochs, finish), no training; its
names (study, parameter, metric, worker) are script payloads that every page must show as text."""

from __future__ import annotations

from hpsearch.records import NewTrial
from hpsearch.store import NewStudy, Store, StudyRecord, TrialState

PAYLOAD = "</script><script>alert(1)</script>"
SPACE = {
    "space": [
        {"class_name": "Float", "config": {"name": "lr", "conditions": [], "min_value": 1e-3, "max_value": 0.1,
                                           "step": None, "sampling": "log"}},
        {"class_name": "Choice", "config": {"name": PAYLOAD, "conditions": [], "values": ["relu", PAYLOAD],
                                            "ordered": False, "default": "relu"}},
    ],
    "values": {},
}  # fmt: skip
SPEC = {"search": {"max_retries": 1, "max_consecutive_failures": 3}, "run": {"lease_seconds": 60}}


def payload_study(store: Store, name: str = PAYLOAD, trials: int = 40) -> StudyRecord:
    """A RUNNING study whose name, a parameter, a value and the objective metric are the payload."""
    study, _ = store.create_study(
        NewStudy(name=name, objective_name=PAYLOAD, direction="max", algorithm="random", max_trials=trials,
                 max_epochs=2, seed=0, spec=SPEC, space=SPACE, source_path="/x/s.toml", base_dir="/x",
                 artifact_root="/x/a")
    )  # fmt: skip
    params = [{"lr": 0.001 * (1 + i), PAYLOAD: "relu" if i % 2 else PAYLOAD} for i in range(trials)]
    store.add_trials(study, [NewTrial(p, 2) for p in params])
    return study


def run_one(store: Store, study: StudyRecord, worker_id: int, fail: bool = False) -> int | None:
    """The worker claims the next trial, reports two epochs and finishes it; returns its number."""
    claimed = store.claim(worker_id, study.id)
    if claimed is None:
        return None
    for epoch in (1, 2):
        value = 0.5 + 0.01 * claimed.number + 0.1 * epoch
        logs = {PAYLOAD: value, "loss": 1 - value}
        assert store.record_epoch(claimed.trial_id, worker_id, epoch, logs, PAYLOAD, "max")
    if fail:
        store.finish(claimed.trial_id, worker_id, TrialState.FAILED, error=f"ValueError: {PAYLOAD}")
    else:
        store.finish(claimed.trial_id, worker_id, TrialState.COMPLETED)
    return claimed.number


def two_workers(store: Store) -> list[int]:
    return [store.register_worker(f"{PAYLOAD}-{i}", f"node-{i}", 100 + i, str(i)) for i in range(2)]
