"""Checkpoint retention: keep what resuming and promotion still need, free the rest (`hpsearch gc`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from hpsearch.paths import UnsafePath, artifact_path, stored_artifact
from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.models import Study, Trial

ORPHAN_GLOB = "checkpoint-*.weights.h5"


@dataclass(frozen=True)
class Collected:
    kept: int
    freed: int
    freed_bytes: int


def needed(trials: list[Trial], study_running: bool, best: Trial | None) -> set[int]:
    """Ids of the trials whose checkpoint may still be read."""
    active = [t for t in trials if t.state in (TrialState.QUEUED, TrialState.RUNNING)]
    keep = {t.id for t in active}  # they resume from their own checkpoint
    keep |= {t.parent_trial_id for t in active if t.parent_trial_id is not None}  # promotions yet to start
    if study_running:
        promoted = {t.parent_trial_id for t in trials if t.parent_trial_id is not None}
        # A successive-halving trial not promoted yet may still be.
        keep |= {
            t.id for t in trials if t.rung is not None and t.state == TrialState.COMPLETED and t.id not in promoted
        }
    if best is not None:
        keep.add(best.id)
    return keep


def collect(store: Store, study: Study, *, dry_run: bool = False) -> Collected:
    trials = store.trials(study.id)
    keep = needed(trials, study.state == StudyState.RUNNING, store.best_trial(study))
    freed = freed_bytes = kept = 0
    doomed = []
    for artifact in store.checkpoints(study.id):
        if artifact.trial_id in keep:
            kept += 1
            continue
        freed += 1
        freed_bytes += artifact.size_bytes
        doomed.append(artifact.id)
        if not dry_run:
            # A URI pointing outside the root: forget the row, never delete the file.
            with contextlib.suppress(UnsafePath):
                stored_artifact(study.artifact_root, artifact.uri).unlink(missing_ok=True)
    if not dry_run:
        store.delete_artifacts(doomed)
    if study.state != StudyState.RUNNING:
        # Files a killed worker wrote but never recorded; while a study runs they may be about to be.
        recorded = {Path(a.uri).resolve() for a in store.checkpoints(study.id)}
        trials_dir = artifact_path(study.artifact_root, study.name, "trials")
        for orphan in trials_dir.glob(f"*/{ORPHAN_GLOB}"):
            if orphan.resolve() not in recorded and _inside(study.artifact_root, orphan):
                freed, freed_bytes = freed + 1, freed_bytes + orphan.stat().st_size
                if not dry_run:
                    orphan.unlink(missing_ok=True)
    return Collected(kept, freed, freed_bytes)


def _inside(root: str, path: Path) -> bool:
    """Whether ``path`` really lies under ``root`` (a symlinked trial directory may point elsewhere)."""
    try:
        stored_artifact(root, str(path))
    except UnsafePath:
        return False
    return not path.is_symlink()
