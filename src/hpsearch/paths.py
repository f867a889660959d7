"""Paths under the artifact root. Every path built from text that a user or the database supplies (study
names, trial numbers, artifact names, checkpoint URIs read back from the database) goes through here, so
none can escape the root: no ``..``, no absolute path, no NUL, no symlink pointing outside."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path

from hpsearch.errors import UsageError


class UnsafePath(UsageError):
    """A path that would leave the artifact root."""


def _check_part(part: str, where: str) -> str:
    if not part or part in (".", ".."):
        raise UnsafePath(where, f"refusing the path component {part!r}")
    if "\x00" in part or "/" in part or "\\" in part:
        raise UnsafePath(where, f"refusing the path component {part!r} (separator or NUL)")
    return part


def _require_inside(root: Path, path: Path, where: str) -> Path:
    resolved_root = root.resolve()
    resolved = path.resolve()  # follows every symlink, also one in the middle
    if resolved != resolved_root and not resolved.is_relative_to(resolved_root):
        raise UnsafePath(where, f"{path} leads outside the artifact root {resolved_root}")
    return resolved


def artifact_path(root: str | Path, *parts: str | int) -> Path:
    """``root/part/part/...``, each part one plain name, resolved and checked to lie under ``root``."""
    where = f"artifact root {root}"
    if "\x00" in str(root):
        raise UnsafePath(where, "the artifact root contains NUL")
    names = [_check_part(str(part), where) for part in parts]
    return _require_inside(Path(root), Path(root).joinpath(*names), where)


def stored_artifact(root: str | Path, uri: str) -> Path:
    """A file URI read back from the database, accepted only when it names a file under ``root``."""
    where = f"artifact {uri!r}"
    if "\x00" in uri or "\x00" in str(root):
        raise UnsafePath(where, "contains NUL")
    path = Path(uri)
    if not path.is_absolute() or ".." in path.parts:
        raise UnsafePath(where, "must be an absolute path without '..'")
    return _require_inside(Path(root), path, where)


def claim_study_root(root: str | Path, name: str) -> Path:
    """A new directory ``root/<name>-<8 hex>`` that this call alone created: the root a new study's files go
    under (its trials, logs and final models at ``<that>/<name>/...``).

    Why a directory of its own and not ``root/<name>``: two databases (a SQLite file and a PostgreSQL server,
    two SQLite files) can each hold a study of the same name and share the default artifact root; keyed by
    name alone they overwrote each other's checkpoints. ``mkdir`` without ``exist_ok`` is atomic on every
    filesystem, so two creators can never be handed the same directory, whatever the random part draws.
    Studies created before keep the root their row records, and so their files.

    Example: ``claim_study_root("hpsearch-artifacts", "mnist")`` -> ``.../hpsearch-artifacts/mnist-3f2a9c1b``.
    """
    base = ensure_writable_root(root)
    _check_part(name, f"artifact root {root}")
    while True:
        candidate = base / f"{name}-{uuid.uuid4().hex[:8]}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue  # taken (by another database's study, or an older file): draw again
        except OSError as exc:
            raise UsageError(f"--artifacts {root}", f"cannot create {candidate.name}: {exc.strerror or exc}") from None
        return candidate


def release_study_root(path: str | Path) -> None:
    """Remove a directory :func:`claim_study_root` made for a study that was not inserted (only if empty)."""
    with contextlib.suppress(OSError):  # not empty or already gone: never delete files here
        Path(path).rmdir()


def remove_study_files(artifact_root: str | Path, name: str) -> None:
    """Delete a study's files (``artifact_root/name``) and the directory claimed for it, when it has one of its
    own (a study created before keyed directories shares its root: that stays)."""
    shutil.rmtree(artifact_path(artifact_root, name), ignore_errors=True)
    if re.fullmatch(re.escape(name) + r"-[0-9a-f]{8}", Path(artifact_root).name):
        release_study_root(artifact_root)


def ensure_writable_root(root: str | Path) -> Path:
    """Create the artifact root if needed and prove a file can be written there (before any trial runs)."""
    path = Path(root)
    where = f"--artifacts {root}"
    if "\x00" in str(root):
        raise UsageError(where, "contains NUL")
    probe = path / f".hpsearch-probe-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"hpsearch")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        if probe.exists():
            probe.unlink()
        raise UsageError(where, f"cannot write to the artifact root: {exc.strerror or exc}") from None
    return path.resolve()
