"""Test-split evaluation: per-class metrics, confusion matrix, binary metrics per slice and threshold."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.execution.evaluation import evaluate_predictions, infer_task, slice_table


def test_task_is_inferred_from_labels_and_output_width() -> None:
    assert infer_task(np.array([0, 1, 1]), np.array([[0.2], [0.7], [0.9]])) == "binary"
    assert infer_task(np.array([0, 2, 1]), np.eye(3)) == "multiclass"
    assert infer_task(np.array([0.5, 1.7, 3.0]), np.array([0.4, 1.0, 2.0])) == "regression"
    assert infer_task(np.array([0.0, 1.0]), np.array([0.1, 0.8])) == "binary"


def test_binary_rows_count_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.95, 0.4, 0.6, 0.05, 0.7, 0.2])
    sex = np.array(["f", "f", "f", "m", "m", "m"])
    rows = slice_table(y, scores, [0.5], {"sex": sex}, [["sex"]])
    overall, female, male = rows
    assert (overall.slice, overall.count, overall.positives) == ("all", 6, 3)
    # at 0.5: predicted positive = [1, 0, 1, 0, 1, 0]: TP 2, FP 1, FN 1, TN 2
    assert overall.accuracy == pytest.approx(4 / 6)
    assert overall.false_positive_rate == pytest.approx(1 / 3)
    assert overall.false_negative_rate == pytest.approx(1 / 3)
    assert overall.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # female: y [1, 1, 0], predicted [1, 0, 1]
    assert (female.slice_value, female.count, female.positives) == ("f", 3, 2)
    assert female.false_positive_rate == 1.0 and female.false_negative_rate == 0.5
    assert female.auc == pytest.approx(0.5)  # scores 0.95, 0.4 vs 0.6
    # male: y [0, 1, 0], all predicted right
    assert male.accuracy == 1.0 and male.auc == 1.0


def test_a_slice_of_one_class_has_no_auc_or_undefined_rates() -> None:
    rows = slice_table(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1]), [0.5], {"g": np.array(["a", "a", "b"])}, [["g"]])
    only_positive = next(r for r in rows if r.slice_value == "a")
    assert only_positive.auc is None and only_positive.false_positive_rate is None
    assert only_positive.false_negative_rate == 0.0


def test_crossed_slices_and_every_threshold() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = rng.random(200)
    features = {"a": rng.choice(["x", "y"], 200), "b": rng.choice(["1", "2", "3"], 200)}
    rows = slice_table(y, scores, [0.1, 0.5, 0.9], features, [["a"], ["a", "b"]])
    assert len(rows) == 3 * (1 + 2 + 6)
    crossed = [r for r in rows if r.slice == "a,b" and r.threshold == 0.5]
    assert sum(r.count for r in crossed) == 200
    assert {r.slice_value for r in crossed} == {f"{a},{b}" for a in "xy" for b in "123"}


def test_binary_evaluation_has_class_report_and_confusion_matrix() -> None:
    y = np.array([0, 0, 1, 1, 1])
    scores = np.array([[0.1], [0.6], [0.8], [0.3], [0.9]])
    evaluation = evaluate_predictions(y, scores, thresholds=[0.5])
    assert evaluation.task == "binary"
    assert evaluation.confusion == {"labels": ["0", "1"], "matrix": [[1, 1], [1, 2]]}
    positive = evaluation.class_rows[1]
    assert (positive.precision, positive.recall, positive.support) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)


def test_logits_get_a_sigmoid() -> None:
    evaluation = evaluate_predictions(np.array([0, 1]), np.array([-3.0, 2.0]), thresholds=[0.5])
    assert evaluation.slice_rows[0].accuracy == 1.0


def test_multiclass_confusion_matrix_and_one_hot_labels() -> None:
    y = np.eye(3)[[0, 1, 2, 2]]
    predictions = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.0, 0.1, 0.9], [0.2, 0.3, 0.5]])
    evaluation = evaluate_predictions(y, predictions)
    assert evaluation.task == "multiclass" and not evaluation.slice_rows
    assert evaluation.confusion is not None
    assert evaluation.confusion["matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    assert [r.recall for r in evaluation.class_rows] == [1.0, 0.0, 1.0]


def test_regression_has_no_class_metrics() -> None:
    evaluation = evaluate_predictions(np.array([0.3, 2.5]), np.array([0.2, 2.0]))
    assert evaluation.task == "regression" and evaluation.confusion is None


def test_a_slice_the_loader_does_not_return_is_named() -> None:
    with pytest.raises(ValueError, match="'sex'"):
        evaluate_predictions(np.array([0, 1]), np.array([0.2, 0.8]), features={}, slices=[["sex"]])
