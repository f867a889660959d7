"""``hpsearch *argv`` in this process (keras imported once for every test): the one in-process CLI runner of
the tests (tests/cli/*, tests/test_bad_inputs.py)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import pytest


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line with ``argv``; returns (exit code, stdout, stderr)."""
    from hpsearch import cli
    from hpsearch.cli.app import err, out

    saved = sys.argv, logging.root.handlers[:], logging.root.level
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    sys.argv = ["hpsearch", *argv]
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"  # wide tables, no cell cut to "…" in assertions; rich reads COLUMNS per print
    out.width = err.width = 250  # unless COLUMNS was set when the consoles were made (another test's)
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, logging.root.handlers[:] = saved[0], saved[1]
        logging.root.setLevel(saved[2])
        logging.getLogger("hpsearch").setLevel(logging.NOTSET)
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
    captured = capsys.readouterr()
    return code, captured.out, captured.err
