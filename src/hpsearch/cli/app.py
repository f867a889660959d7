"""The ``hpsearch`` command's Typer application, shared options and entry point: one line per error
(``error: <where>: <what>``), exit 2 for bad input, tracebacks only with ``--debug``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hpsearch.errors import HpsearchError

# Before anything imports TensorFlow (a hypermodel at creation, a worker's fork server, `promote --local`), in
# every command, --debug too: its C++ start-up chatter (CUDA probing, CPU features) would bury the output.
# Child processes inherit it; a user who wants those logs sets TF_CPP_MIN_LOG_LEVEL=0.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Keras' ONNX export (every promote) warns about numpy's np.object when it first runs: noise in the output, about
# keras' own code. Only that module's FutureWarning, in this process and, through PYTHONWARNINGS (appended, so a
# user's own filters stay), in every worker and trial process started from it.
_KERAS_ONNX_NOISE = "ignore::FutureWarning:keras.src.export.tf2onnx_lib"
warnings.filterwarnings("ignore", category=FutureWarning, module="keras.src.export.tf2onnx_lib")
if _KERAS_ONNX_NOISE not in os.environ.get("PYTHONWARNINGS", ""):
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), _KERAS_ONNX_NOISE]))


def _no_type_after_flags() -> None:
    """Typer 0.2x labels every flag ``<bool>`` in the help, which reads as if the flag took a value (``--local
    <bool>``); a flag's help shows no type, as argparse's and click's own help do. Kept defensive: an older or
    newer typer without this method shows its own help unchanged."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if option is None or original is None:
        return

    def display_type_rich(self: object, ctx: object) -> str | None:
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    option.display_type_rich = display_type_rich


_no_type_after_flags()
# Help texts are rich markup: a literal "[promote]" must be written "\\[promote]" (see results.promote).
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Hyperparameter search and AutoML for Keras 3.")
study_app = typer.Typer(no_args_is_help=True, help="Create, stop and resume studies.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(study_app, name="study")
app.add_typer(db_app, name="db")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
_debug = False

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $HPSEARCH_DB, else sqlite:///hpsearch.db).")
]
ArtifactsOption = Annotated[
    Path, typer.Option("--artifacts", envvar="HPSEARCH_ARTIFACTS", help="Artifact root for checkpoints and models.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# Trial numbers are 32-bit integers in the database: a larger one is a usage error, not a driver error.
TrialNumber = Annotated[int, typer.Argument(min=0, max=2**31 - 1, help="The trial's number.")]


def _show_version(value: bool) -> None:
    if value:
        from hpsearch import __version__

        out.print(f"hpsearch {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    global _debug
    _debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


def _interrupt(signum: int, frame: object) -> None:
    # Once: the terminal's Ctrl-C reaches every process of the group and `hpsearch run` forwards it to its
    # workers too; a second signal must not cut short the clean-up (trials handed back) the first one began.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one line per error, exit 2 for bad input, tracebacks only with --debug."""
    # Batch schedulers and Kubernetes stop with SIGTERM: clean up as on Ctrl-C (trials go back to the queue).
    # SIGINT too, explicitly: a process started with `nohup ... &` inherits SIG_IGN for it, which Python keeps.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        code = app(standalone_mode=False, prog_name="hpsearch")
        if isinstance(code, int) and code:
            sys.exit(code)  # typer returns 130 after an interrupt instead of raising
    except HpsearchError as exc:
        _fail(exc.where, exc.what, exc.exit_code, also=exc.also)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # Click's exceptions, matched by name: typer may bring its own vendored copy of click.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "Exit" in kinds:
            sys.exit(getattr(exc, "exit_code", 0))
        if "Abort" in kinds:
            sys.exit(1)
        if "ClickException" in kinds:  # a missing argument, a bad option value, an unknown command
            context = getattr(exc, "ctx", None)
            where = context.command_path if context is not None else "hpsearch"
            _fail(where, " ".join(exc.format_message().split()), exc.exit_code)  # type: ignore[attr-defined]
        hint = "" if _debug else " (run with --debug for the traceback)"
        _fail("internal", f"{type(exc).__name__}: {exc}{hint}", 1)


def _fail(where: str, what: str, code: int, also: tuple[tuple[str, str], ...] = ()) -> None:
    """Print the one-line error (after the traceback with --debug) and exit with ``code``."""
    # argv too: an unknown command fails before the option callback has set _debug.
    if _debug or "--debug" in sys.argv[1:2]:
        import traceback

        traceback.print_exc()
    for place, problem in ((where, what), *also):
        text = " ".join(f"error: {place}: {problem}".split("\n"))
        err.print(text, highlight=False, markup=False, soft_wrap=True)
    sys.exit(code)
