"""References to user code: ``file.py:name`` or ``package.module:name``, the form a study file names its
hypermodel, data loader, sampler, scheduler and callbacks in. One resolver for every layer that imports user
code (the workers' execution side, the coordinator's strategies), and its inverse for the Python API.

>>> reference(load_object("os.path:join"))
'posixpath:join'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpsearch.errors import UsageError, UserCodeError


def load_object(ref: str, base_dir: str | Path | None = None) -> Any:
    """The object ``ref`` names: ``file.py:name`` (relative to ``base_dir``, default the working directory) or
    ``package.module:name`` (importable, or found in ``base_dir``).

    >>> load_object("os.path:join").__name__
    'join'
    """
    target, _, attribute = ref.rpartition(":")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        if target.endswith(".py"):
            path = (base / target).resolve()
            if not path.is_file():
                raise UserCodeError(ref, f"no such file {path}")
            module_name = f"hpsearch_user.{path.stem}_{abs(hash(str(path))) % 10**8}"
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                # Siblings of the study's python file import each other as in a script.
                if str(path.parent) not in sys.path:
                    sys.path.insert(0, str(path.parent))
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            if str(base) not in sys.path:
                sys.path.insert(0, str(base))
            module = importlib.import_module(target)
    except UserCodeError:
        raise
    except (Exception, SystemExit) as exc:  # a script's sys.exit() must not end hpsearch with no word
        raise UserCodeError(ref, f"import failed: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise UserCodeError(ref, f"{target} has no attribute {attribute!r}") from None


def reference(target: Callable[..., Any] | str) -> str:
    """``module:name`` for an importable function or class, ``/abs/script.py:name`` for one of the running
    script (``__main__``); strings pass through.

    >>> reference(os.path.join)
    'posixpath:join'
    """
    if isinstance(target, str):
        return target
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", "")
    if not module or not name.isidentifier():  # a lambda, a nested function, a bound method
        raise UsageError(repr(target), "must be a module-level function or class (workers import it by name)")
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        if main_file is None:
            raise UsageError(
                f"{name}", "is defined in an interactive session; put it in a .py file (or use hpsearch.keras_tuner)"
            )
        return f"{Path(main_file).resolve()}:{name}"
    return f"{module}:{name}"
