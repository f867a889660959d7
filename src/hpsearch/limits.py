"""Limits every database engine enforces alike. SQLite ignores ``VARCHAR(n)``, PostgreSQL refuses a longer
value mid-INSERT: names (parameters, metrics, objectives) are checked against one limit before they reach
either, so a study behaves the same on both. Imports nothing of hpsearch.

>>> name_too_long("units", "parameter") is None
True
>>> name_too_long("x" * 201, "metric")
"metric name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' has 201 characters; at most 200 are allowed"
"""

from __future__ import annotations

from collections.abc import Iterable

# The width of the name columns (trial_params.name, trial_metrics.name, studies.objective_name, ...).
NAME_MAX = 200
# The study seed reaches numpy (seeds < 2**32), Keras (set_random_seed) and Optuna samplers, and trial n is
# seeded with seed + n: a study seed below 2**31 leaves room for more trials than any study plans.
SEED_MAX = 2**31 - 1


def name_too_long(name: str, kind: str) -> str | None:
    """None when ``name`` fits the database's name columns; else the one-line reason (the name shortened)."""
    if len(name) <= NAME_MAX:
        return None
    return f"{kind} name {name[:30] + '...'!r} has {len(name)} characters; at most {NAME_MAX} are allowed"


def first_too_long(names: Iterable[str], kind: str) -> str | None:
    """The reason for the first name in ``names`` over the limit, or None.

    >>> first_too_long(["loss", "y" * 300], "metric")[:30]
    "metric name 'yyyyyyyyyyyyyyyyy"
    """
    for name in names:
        reason = name_too_long(str(name), kind)
        if reason is not None:
            return reason
    return None
