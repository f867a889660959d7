"""Test-split evaluation of a final model from its predictions: per-class precision, recall and F1, the
confusion matrix, and a binary classifier's metrics at several thresholds, overall and per data slice
(TensorFlow Model Analysis' fairness indicators). Numpy and scikit-learn only: no keras, no SQL."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

Task = Literal["binary", "multiclass", "regression"]
OVERALL = "all"


@dataclass(frozen=True)
class ClassRow:
    class_label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class SliceRow:
    slice: str  # the features, comma-separated ("sex,class"), or "all"
    slice_value: str  # their values in the same order ("male,1st"), or "all"
    threshold: float
    count: int
    positives: int
    accuracy: float | None
    false_positive_rate: float | None
    false_negative_rate: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    auc: float | None


@dataclass
class Evaluation:
    task: Task
    class_rows: list[ClassRow] = field(default_factory=list)
    # {"labels": [...], "matrix": [[count of true label i predicted as j]]}, and "class_names": the name of each
    # label, in the same order, when the data loader gave them (the report shows them instead of 0, 1, ...).
    confusion: dict[str, list[object]] | None = None
    slice_rows: list[SliceRow] = field(default_factory=list)


def infer_task(y: np.ndarray, predictions: np.ndarray) -> Task:
    """Several outputs: multiclass; one output and labels that are all 0/1 integers: binary; else regression."""
    width = predictions.shape[1] if predictions.ndim > 1 else 1
    if width > 1:
        return "multiclass"
    labels = np.asarray(y).reshape(-1)
    integral = labels.dtype.kind in "biu" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels)))
    return "binary" if integral and set(np.unique(labels).tolist()) <= {0, 1} else "regression"


def true_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels from integer labels or one-hot rows."""
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    return y.reshape(-1).astype(np.int64)


def binary_scores(predictions: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class; a model that outputs logits gets a sigmoid."""
    scores = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        scores = 1 / (1 + np.exp(-scores))
    return scores


def class_report(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int], class_names: Sequence[str] | None = None
) -> tuple[list[ClassRow], dict]:
    """Per-class rows (labelled by class index, as stored) and the confusion matrix; with ``class_names`` the
    matrix's JSON also carries each label's name (a label the names do not reach keeps its index)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), zero_division=0
    )
    rows = [
        ClassRow(str(label), float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]
    matrix = confusion_matrix(y_true, y_pred, labels=list(labels))
    confusion: dict[str, list[object]] = {"labels": [str(label) for label in labels], "matrix": matrix.tolist()}
    if class_names:
        names = list(class_names)
        confusion["class_names"] = [names[label] if 0 <= label < len(names) else str(label) for label in labels]
    return rows, confusion


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def threshold_row(name: str, value: str, threshold: float, y: np.ndarray, scores: np.ndarray) -> SliceRow:
    predicted = scores >= threshold
    positive = y == 1
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    tn = int(np.sum(~predicted & ~positive))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    auc = float(roc_auc_score(y, scores)) if 0 < int(positive.sum()) < len(y) else None
    return SliceRow(
        slice=name,
        slice_value=value,
        threshold=threshold,
        count=len(y),
        positives=int(positive.sum()),
        accuracy=_ratio(tp + tn, len(y)),
        false_positive_rate=_ratio(fp, fp + tn),
        false_negative_rate=_ratio(fn, fn + tp),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        auc=auc if auc is None or math.isfinite(auc) else None,
    )


def slice_table(
    y: np.ndarray,
    scores: np.ndarray,
    thresholds: Sequence[float],
    features: Mapping[str, np.ndarray],
    slices: Sequence[Sequence[str]],
) -> list[SliceRow]:
    """One row per (slice, value, threshold): the whole test split first, then every value combination of
    every declared slice that occurs in the data."""
    y = true_labels(y)
    rows = [threshold_row(OVERALL, OVERALL, t, y, scores) for t in thresholds]
    for names in slices:
        columns = [np.asarray(features[name]).astype(str) for name in names]
        keys = np.array([",".join(values) for values in zip(*columns, strict=True)])
        for key in sorted(set(keys.tolist())):
            member = keys == key
            rows.extend(threshold_row(",".join(names), key, t, y[member], scores[member]) for t in thresholds)
    return rows


def evaluate_predictions(
    y: np.ndarray,
    predictions: np.ndarray,
    *,
    task: Task | Literal["auto"] = "auto",
    thresholds: Sequence[float] = (0.1, 0.5, 0.9),
    features: Mapping[str, np.ndarray] | None = None,
    slices: Sequence[Sequence[str]] = (),
    class_names: Sequence[str] | None = None,
) -> Evaluation:
    predictions = np.asarray(predictions)
    chosen: Task = infer_task(y, predictions) if task == "auto" else task
    if chosen == "regression":
        return Evaluation("regression")
    labels_true = true_labels(y)
    if chosen == "binary":
        scores = binary_scores(predictions)
        rows, confusion = class_report(labels_true, (scores >= 0.5).astype(np.int64), [0, 1], class_names)
        missing = [name for group in slices for name in group if name not in (features or {})]
        if missing:
            raise ValueError(f"promote.slices names {missing[0]!r}, which the data loader's 'slices' does not hold")
        return Evaluation("binary", rows, confusion, slice_table(y, scores, thresholds, features or {}, slices))
    predicted = np.argmax(predictions.reshape(len(predictions), -1), axis=1)
    classes = predictions.shape[1] if predictions.ndim > 1 else int(labels_true.max()) + 1
    rows, confusion = class_report(labels_true, predicted, range(classes), class_names)
    return Evaluation("multiclass", rows, confusion)
