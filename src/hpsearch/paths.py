"""Paths under the artifact root. Every path built from text that a user or the database supplies (study
names, trial numbers, artifact names, checkpoint URIs read back from the database) goes through here, so
none can escape the root: no ``..``, no absolute path, no NUL, no symlink pointing outside."""

from __future__ import annotations

import os
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
