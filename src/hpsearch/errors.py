"""Errors that reach the user as one line: ``error: <where>: <what>``."""

from __future__ import annotations


class HpsearchError(Exception):
    """A failure the user can act on. ``where`` names the file, field, study or URL at fault."""

    exit_code = 1
    #: More ``(where, what)`` failures found with this one (a study file's other errors), each shown on its line.
    also: tuple[tuple[str, str], ...] = ()

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


class UsageError(HpsearchError):
    """Bad input: a study file, a command-line value, an unknown study or trial (exit code 2)."""

    exit_code = 2


class SpecError(UsageError):
    """A study file that does not validate."""


class UserCodeError(UsageError):
    """A hypermodel or data loader that cannot be imported, raises, or returns the wrong thing."""


class StoreError(HpsearchError):
    """The database cannot be reached or its schema does not match this version of hpsearch."""
