"""A labelled text corpus that ships with Python: the first paragraph of every public docstring of a few
standard-library modules, labelled by the module's topic (5 classes). Same texts for the same Python version;
no download."""

from __future__ import annotations

import importlib
import inspect

import numpy as np

SEED = 42
TOPICS: dict[str, list[str]] = {
    "text": ["string", "re", "textwrap", "difflib", "json", "csv", "html.parser", "configparser", "unicodedata"],
    "numbers": ["math", "cmath", "decimal", "fractions", "statistics", "random", "numbers"],
    "files": ["os", "os.path", "shutil", "pathlib", "tempfile", "glob", "fnmatch", "stat", "io", "zipfile", "tarfile"],
    "network": ["socket", "ssl", "http.client", "http.server", "urllib.request", "urllib.parse", "smtplib", "ftplib"],
    "concurrency": ["threading", "multiprocessing", "asyncio", "concurrent.futures", "queue", "subprocess", "sched"],
}


def _docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    texts = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", module_name) != module.__name__:
            continue
        members = [obj]
        if inspect.isclass(obj):
            members += [m for n, m in sorted(vars(obj).items()) if not n.startswith("_")]
        for member in members:
            doc = inspect.getdoc(member) if callable(member) else None
            paragraph = (doc or "").split("\n\n")[0].replace("\n", " ").strip()
            if len(paragraph.split()) >= 4:
                texts.append(paragraph)
    return sorted(set(texts))


def corpus() -> tuple[np.ndarray, np.ndarray]:
    texts, labels = [], []
    for label, modules in enumerate(TOPICS.values()):
        for module_name in modules:
            for text in _docstrings(module_name):
                texts.append(text)
                labels.append(label)
    return np.array(texts), np.array(labels, dtype="int64")


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import train_test_split

    x, y = corpus()
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.30, stratify=y, random_state=SEED)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.50, stratify=y_rest, random_state=SEED)
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}
