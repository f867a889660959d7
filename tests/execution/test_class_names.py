"""Class names (issue 23): a data loader may name its classes ("class_names"); they are checked against the
test labels, survive the worker's on-disk copy of the data and reach the final evaluation's confusion-matrix
JSON, which the report reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpsearch.errors import UserCodeError
from hpsearch.execution.evaluation import evaluate_predictions
from hpsearch.execution.loading import open_dataset, save_dataset, validate_dataset


def _raw(y_test: Any, **extra: Any) -> dict[str, Any]:
    x = np.zeros((len(y_test), 2), dtype="float32")
    return {"train": (x, y_test), "validation": (x, y_test), "test": (x, y_test), **extra}


def test_class_names_reach_the_test_split_and_survive_the_copy_on_disk(tmp_path: Path) -> None:
    dataset = validate_dataset(_raw(np.array([0, 1, 1]), class_names=("died", "survived")), "titanic.py:load_data")
    assert dataset["test"].class_names == ("died", "survived")
    assert dataset["train"].class_names is None
    save_dataset(dataset, tmp_path)
    assert open_dataset(tmp_path)["test"].class_names == ("died", "survived")
    # scikit-learn's target_names is a numpy array of strings
    one_hot = np.eye(3)[[0, 2, 1]]
    names = validate_dataset(_raw(one_hot, class_names=np.array(["setosa", "versicolor", "virginica"])), "iris")
    assert names["test"].class_names == ("setosa", "versicolor", "virginica")


@pytest.mark.parametrize(
    ("y", "names", "message"),
    [
        (np.array([0, 1, 2]), ["a", "b"], "names 2 classes; the test labels go up to 2"),
        (np.eye(3), ["a", "b"], "names 2 classes; the labels have 3"),
        (np.array([0, 1]), "ab", "must be a list of names"),
        (np.array([0, 1]), ["a", "a"], "each once"),
        (np.array([0, 1]), ["a"], "at least two classes"),
    ],
)
def test_class_names_that_do_not_fit_the_labels_are_one_error(y: Any, names: Any, message: str) -> None:
    with pytest.raises(UserCodeError) as caught:
        validate_dataset(_raw(y, class_names=names), "data.py:load_data")
    assert "class_names" in str(caught.value) and message in str(caught.value)


def test_class_names_without_a_test_split_are_refused() -> None:
    x, y = np.zeros((2, 1), dtype="float32"), np.array([0, 1])
    with pytest.raises(UserCodeError, match="without a 'test' split"):
        validate_dataset({"train": (x, y), "validation": (x, y), "class_names": ["a", "b"]}, "data.py:load_data")


def test_the_evaluation_names_the_confusion_matrix_labels() -> None:
    binary = evaluate_predictions(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.3, 0.1]), class_names=["no", "yes"])
    assert binary.confusion is not None
    assert binary.confusion["labels"] == ["0", "1"] and binary.confusion["class_names"] == ["no", "yes"]
    assert [row.class_label for row in binary.class_rows] == ["0", "1"]  # the stored label stays the index
    multi = evaluate_predictions(np.array([0, 2, 1]), np.eye(3), class_names=("a", "b", "c"))
    assert multi.confusion is not None and multi.confusion["class_names"] == ["a", "b", "c"]
    unnamed = evaluate_predictions(np.array([0, 1]), np.array([0.2, 0.8]))
    assert unnamed.confusion is not None and "class_names" not in unnamed.confusion
