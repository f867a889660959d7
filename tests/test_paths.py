"""Nothing escapes the artifact root: not a study name, trial number or artifact name, nor a checkpoint URI
read back from the database (``..``, absolute paths, NUL, symlinks pointing outside)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hpsearch.control.retention import collect
from hpsearch.errors import UsageError
from hpsearch.execution.protocol import CheckpointWritten
from hpsearch.execution.worker import Worker, _StudyCache, _TrialRun
from hpsearch.paths import UnsafePath, artifact_path, ensure_writable_root, stored_artifact
from hpsearch.spec import load_spec
from hpsearch.store import NewArtifact, NewStudy, Store, StudyRecord, StudyState, TrialState
from hpsearch.strategies import NewTrial

from .conftest import UNIT_X_SPACE, write_tiny_study


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def test_plain_names_resolve_under_the_root(root: Path) -> None:
    assert artifact_path(root, "tiny", "trials", 3) == root.resolve() / "tiny" / "trials" / "3"
    assert stored_artifact(root, str(root / "tiny" / "x.h5")) == root.resolve() / "tiny" / "x.h5"


@pytest.mark.parametrize("part", ["..", ".", "", "/etc", "a/../..", "a/b", "a\\b", "x\x00y"])
def test_a_name_that_is_not_one_plain_name_is_refused(root: Path, part: str) -> None:
    with pytest.raises(UnsafePath, match="refusing the path component"):
        artifact_path(root, "tiny", part)


def test_a_symlink_pointing_outside_is_refused(root: Path) -> None:
    (root / "tiny").symlink_to(root.parent / "outside")
    with pytest.raises(UnsafePath, match="leads outside the artifact root"):
        artifact_path(root, "tiny", "trials")
    with pytest.raises(UnsafePath, match="leads outside the artifact root"):
        stored_artifact(root, str(root / "tiny" / "checkpoint-0001.weights.h5"))
    (root / "inside").symlink_to(root / "tiny2")  # a link that stays inside is fine
    assert artifact_path(root, "inside") == root.resolve() / "tiny2"


@pytest.mark.parametrize(
    ("uri", "what"),
    [
        ("relative/x.h5", "absolute path"),
        ("{root}/../outside/x.h5", "without '..'"),
        ("{root}/../../../../etc/passwd", "without '..'"),
        ("/etc/passwd", "outside the artifact root"),
        ("{root}/x\x00.h5", "NUL"),
    ],
)
def test_a_stored_uri_outside_the_root_is_refused(root: Path, uri: str, what: str) -> None:
    with pytest.raises(UnsafePath, match=what):
        stored_artifact(root, uri.format(root=root))


def test_the_artifact_root_must_be_writable(tmp_path: Path) -> None:
    assert ensure_writable_root(tmp_path / "new" / "root") == (tmp_path / "new" / "root").resolve()
    assert list((tmp_path / "new" / "root").iterdir()) == []  # the probe is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot write to the artifact root: Not a directory"):
        ensure_writable_root(tmp_path / "file" / "root")
    with pytest.raises(UsageError, match="contains NUL"):
        ensure_writable_root(f"{tmp_path}/a\x00b")


# --- where the database supplies the text ---------------------------------------------------------------


def hand_written_study(store: Store, tmp_path: Path, name: str, root: Path) -> StudyRecord:
    """A study row as if written into the database by hand, bypassing the study file's name rule."""
    spec = load_spec(write_tiny_study(tmp_path)).model_dump(mode="json")
    study, _ = store.create_study(
        NewStudy(
            name=name,
            objective_name="val_accuracy",
            direction="max",
            objectives=[{"name": "val_accuracy", "direction": "max"}],
            algorithm="random",
            max_trials=4,
            max_epochs=2,
            seed=0,
            spec=spec,
            space=UNIT_X_SPACE,
            source_path=str(tmp_path / "tiny.toml"),
            base_dir=str(tmp_path),
            artifact_root=str(root),
        )
    )
    return study


def test_a_study_named_to_escape_fails_its_trial_and_writes_nothing_outside(
    store: Store, tmp_path: Path, root: Path
) -> None:
    study = hand_written_study(store, tmp_path, "../outside", root)
    store.add_trials(study, [NewTrial({"x": 0.5}, 1)])
    worker = Worker(store)
    worker.id = store.register_worker("w", "host", 1, None)
    worker.scratch = tmp_path / "scratch"
    claimed = store.claim(worker.id, study.id)
    assert claimed is not None
    worker.run_trial(claimed)  # fails before any trial process starts
    (trial,) = store.trials(study.id)
    assert trial.state == TrialState.FAILED
    assert "refusing the path component '../outside'" in (trial.error or "")
    assert list((tmp_path / "outside").iterdir()) == [] and list(root.iterdir()) == []


def test_a_replaced_checkpoint_outside_the_root_is_not_deleted(
    store: Store, tmp_path: Path, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = hand_written_study(store, tmp_path, "tiny", root)
    store.add_trials(study, [NewTrial({"x": 0.5}, 2)])
    worker = Worker(store)
    worker.id = store.register_worker("w", "host", 1, None)
    claimed = store.claim(worker.id, study.id)
    assert claimed is not None
    precious = tmp_path / "outside" / "precious.txt"
    precious.write_text("keep me")
    store.record_checkpoint(
        NewArtifact(
            study_id=study.id,
            trial_id=claimed.trial_id,
            kind="checkpoint",
            epoch=1,
            uri=str(precious),
            sha256="0" * 64,
            size_bytes=7,
        )
    )
    spec = load_spec(write_tiny_study(tmp_path))
    run = _TrialRun(worker, claimed, _StudyCache(study, spec, tmp_path), task=None, first_beat_at=0.0)
    inside = root / "tiny" / "trials" / "0" / "checkpoint-0002.weights.h5"
    with caplog.at_level(logging.WARNING, logger="hpsearch.execution.worker"):
        assert run.receive(CheckpointWritten(2, str(inside), "0" * 64, 10))
    assert precious.read_text() == "keep me"
    assert "outside the artifact root" in caplog.text
    assert [a.uri for a in store.checkpoints(study.id)] == [str(inside)]


def test_gc_deletes_nothing_outside_the_root(store: Store, tmp_path: Path, root: Path) -> None:
    study = hand_written_study(store, tmp_path, "tiny", root)
    store.add_trials(study, [NewTrial({"x": 0.1}, 1), NewTrial({"x": 0.2}, 1)])
    worker = store.register_worker("w", "host", 1, None)
    outside = tmp_path / "outside"
    for number in (0, 1):
        claimed = store.claim(worker, study.id)
        assert claimed is not None
        target = outside / f"precious-{number}.h5"
        target.write_text("keep me")
        store.record_checkpoint(
            NewArtifact(
                study_id=study.id,
                trial_id=claimed.trial_id,
                kind="checkpoint",
                epoch=1,
                uri=str(target),
                sha256="0" * 64,
                size_bytes=7,
            )
        )
        store.finish(claimed.trial_id, worker, TrialState.FAILED, "boom")
    # A trial directory that is a symlink to elsewhere, holding what looks like an orphaned checkpoint.
    (root / "tiny" / "trials").mkdir(parents=True)
    (root / "tiny" / "trials" / "7").symlink_to(outside)
    (outside / "checkpoint-0001.weights.h5").write_text("keep me too")
    store.set_study_state(study.id, StudyState.STOPPED)
    result = collect(store, store.study_by_id(study.id))
    assert result.freed == 2  # the rows are forgotten ...
    assert store.checkpoints(study.id) == []
    assert sorted(p.name for p in outside.iterdir()) == [  # ... and no file outside the root is touched
        "checkpoint-0001.weights.h5",
        "precious-0.h5",
        "precious-1.h5",
    ]


def test_a_study_root_is_claimed_by_one_creator_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24: a new study's files go under a directory only its creator made; a name already taken (by a
    study of another database) is never handed out again, even when the random part repeats."""
    import uuid

    from hpsearch.paths import claim_study_root, release_study_root, remove_study_files

    # Each claim draws once for the root's write probe, then for the directory.
    draws = iter(uuid.UUID(int=n << 96) for n in (100, 1, 101, 1, 2))
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    first = claim_study_root(root, "tiny")
    second = claim_study_root(root, "tiny")  # the first draw repeats: drawn again
    assert first != second and first.parent == second.parent == root.resolve()
    assert first.name.startswith("tiny-") and second.name.startswith("tiny-")
    (first / "tiny" / "trials").mkdir(parents=True)
    release_study_root(first)  # not empty: kept
    assert first.is_dir()
    remove_study_files(first, "tiny")
    assert not first.exists() and second.is_dir()
    remove_study_files(root, "other")  # a study sharing the root (created before): the root stays
    assert root.is_dir()
