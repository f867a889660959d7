"""Checkpoint retention: keep what resuming and promotion still need, free the rest (`hpsearch gc`).

It lives in ``control``, not ``analysis``, for two reasons: it deletes (checkpoint files, and their rows through
the one store method :meth:`Store.delete_artifacts`), and ``analysis`` only ever reads; and what it keeps is
decided by the trial lifecycle that ``control`` runs (queued and running trials resume from their checkpoint,
a promotion continues its parent's, a successive-halving trial may still be promoted while the study runs).

Example::

    >>> result = collect(store, store.study("mnist_mlp"), dry_run=True)
    >>> print(f"would free {result.freed} checkpoints ({result.freed_bytes / 1e6:.1f} MB)")
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from hpsearch.paths import UnsafePath, artifact_path, stored_artifact
from hpsearch.store import Store, StudyRecord, StudyState, TrialRecord, TrialState

ORPHAN_GLOB = "checkpoint-*.weights.h5"


@dataclass(frozen=True)
class Collected:
    """What :func:`collect` did (or would do). Example: ``Collected(kept=3, freed=9, freed_bytes=1_200_000)``."""

    kept: int
    freed: int
    freed_bytes: int


def needed(trials: list[TrialRecord], may_promote: bool, best: TrialRecord | None) -> set[int]:
    """Ids of the trials whose checkpoint may still be read. ``may_promote``: the study may still plan trials
    (it is not COMPLETED), so a successive-halving trial not promoted yet may still be.

    Example: ``needed(store.trials(study.id), may_promote=True, best=store.best_trial(study))`` -> ``{4, 7}``.
    """
    active = [t for t in trials if t.state in (TrialState.QUEUED, TrialState.RUNNING)]
    keep = {t.id for t in active}  # they resume from their own checkpoint
    keep |= {t.parent_trial_id for t in active if t.parent_trial_id is not None}  # promotions yet to start
    if may_promote:
        promoted = {t.parent_trial_id for t in trials if t.parent_trial_id is not None}
        # A successive-halving trial not promoted yet may still be: also in a STOPPED (or FAILED) study, whose
        # coordinator plans the promotion only once it is resumed (issue 24: gc of a stopped Hyperband study
        # freed the parent, and the promoted trial trained from epoch 0).
        keep |= {
            t.id for t in trials if t.rung is not None and t.state == TrialState.COMPLETED and t.id not in promoted
        }
    if best is not None:
        keep.add(best.id)
    return keep


def collect(store: Store, study: StudyRecord, *, dry_run: bool = False) -> Collected:
    """Delete the checkpoints of ``study`` that :func:`needed` does not keep (files, then their rows in one
    statement), and, once the study is no longer running, checkpoint files no row records.

    Example: ``collect(store, store.study("mnist_mlp")).freed`` -> ``9``.
    """
    trials = store.trials(study.id)
    keep = needed(trials, study.state != StudyState.COMPLETED, store.best_trial(study))
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
    if study.state != StudyState.RUNNING and not any(t.state == TrialState.RUNNING for t in trials):
        # Files a killed worker wrote but never recorded; while a study (or a trial still stopping) runs they
        # may be about to be.
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
