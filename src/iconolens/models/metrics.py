"""Classification metrics the papers report, computed from labels and scores.

Multi-class: ``y_true`` is (N,) class indices and ``scores`` (N, C) probabilities (or any monotone score).
Multi-label: ``y_true`` is an (N, C) 0/1 indicator matrix and predictions come from per-class thresholds.
Counting metrics (accuracy, precision, recall, F-scores, confusion matrix) are vectorised numpy; the
ranking metrics (ROC-AUC, PR-AUC as average precision) use scikit-learn per class. Undefined ratios
(no predicted or no true positives for a class) count as 0, as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

F2_THRESHOLDS = (0.2, 0.3, 0.4, 0.5)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of examples whose highest score is their class."""
    return float(np.mean(np.argmax(scores, axis=1) == np.asarray(y_true)))


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int = 5) -> float:
    """Fraction of examples whose class is among their ``k`` highest scores (ties broken by index)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, row = true class, column = predicted class."""
    flat = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(
    true_indicator: np.ndarray, pred_indicator: np.ndarray, beta: float = 1.0
) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F-beta from (N, C) 0/1 matrices of true and predicted labels."""
    t = np.asarray(true_indicator, dtype=bool)
    p = np.asarray(pred_indicator, dtype=bool)
    tp = np.sum(t & p, axis=0)
    precision = _safe_divide(tp, np.sum(p, axis=0))
    recall = _safe_divide(tp, np.sum(t, axis=0))
    b2 = beta * beta
    fbeta = _safe_divide((1 + b2) * precision * recall, b2 * precision + recall)
    return {"precision": precision, "recall": recall, "f": fbeta, "support": np.sum(t, axis=0)}


def one_hot(y_true: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(y_true), num_classes), dtype=np.int64)
    out[np.arange(len(y_true)), np.asarray(y_true, dtype=np.int64)] = 1
    return out


def per_class_ranking(true_indicator: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ROC-AUC and PR-AUC (average precision), NaN for a class without both outcomes."""
    t = np.asarray(true_indicator)
    s = np.asarray(scores, dtype=np.float64)
    roc = np.full(t.shape[1], np.nan)
    pr = np.full(t.shape[1], np.nan)
    for c in range(t.shape[1]):
        positives = int(t[:, c].sum())
        if 0 < positives < len(t):
            roc[c] = roc_auc_score(t[:, c], s[:, c])
            pr[c] = average_precision_score(t[:, c], s[:, c])
    return {"roc_auc": roc, "pr_auc": pr}


def f_beta_per_example(
    true_indicator: np.ndarray, probabilities: np.ndarray, threshold: float, beta: float = 2.0
) -> float:
    """Mean over examples of F-beta between true and thresholded (``p > threshold``) label sets.

    The iMet competition metric (beta = 2: recall counts four times as much as precision). An example with
    no true and no predicted labels scores 1; with exactly one of the two empty it scores 0.
    """
    t = np.asarray(true_indicator, dtype=bool)
    p = np.asarray(probabilities) > threshold
    tp = np.sum(t & p, axis=1).astype(np.float64)
    b2 = beta * beta
    den = b2 * t.sum(axis=1) + p.sum(axis=1)
    per_example = np.where(den > 0, _safe_divide((1 + b2) * tp, den), 1.0)
    return float(per_example.mean())


def tune_thresholds(
    true_indicator: np.ndarray, probabilities: np.ndarray, grid: Sequence[float] | None = None
) -> np.ndarray:
    """Per-class decision threshold maximising that class's F1 on held-out data (0.5 when undecidable).

    Ties go to the threshold closest to 0.5, so a class with no evidence keeps the neutral default.
    """
    grid_arr = np.asarray(grid if grid is not None else np.round(np.arange(0.05, 0.96, 0.05), 2))
    t = np.asarray(true_indicator, dtype=bool)
    p = np.asarray(probabilities)
    preds = p[:, :, None] > grid_arr[None, None, :]  # (N, C, G)
    tp = np.sum(preds & t[:, :, None], axis=0)
    f1 = _safe_divide(2 * tp, preds.sum(axis=0) + t.sum(axis=0)[:, None])
    closeness = -np.abs(grid_arr - 0.5)
    order = np.lexsort((np.broadcast_to(closeness, f1.shape), f1), axis=-1)
    best = grid_arr[order[:, -1]]
    best[t.sum(axis=0) == 0] = 0.5
    return best


def _nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _listing(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def classification_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    task: str = "multiclass",
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Every metric for one split as a JSON-ready dict.

    Multi-class: accuracy, top-5, macro and per-class P/R/F1 of the arg-max prediction, ROC-AUC and PR-AUC
    (one class against the rest, macro over classes present), confusion matrix. Multi-label: P/R/F1 at the
    per-class ``thresholds`` (0.5 if None), exact-match accuracy, ROC-AUC, PR-AUC, and F2 per example
    at 0.2, 0.3, 0.4 and 0.5.
    """
    scores = np.asarray(scores, dtype=np.float64)
    num_classes = len(classes)
    result: dict[str, Any] = {"task": task, "n": int(scores.shape[0]), "classes": list(classes)}
    if task == "multiclass":
        y = np.asarray(y_true, dtype=np.int64)
        truth = one_hot(y, num_classes)
        pred = np.argmax(scores, axis=1)
        prf = precision_recall_f1(truth, one_hot(pred, num_classes))
        result["accuracy"] = accuracy(y, scores)
        result["top5_accuracy"] = top_k_accuracy(y, scores, 5)
        result["confusion_matrix"] = confusion_matrix(y, pred, num_classes).tolist()
    else:
        truth = np.asarray(y_true, dtype=np.int64)
        th = np.full(num_classes, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        pred_ind = scores > th[None, :]
        prf = precision_recall_f1(truth, pred_ind)
        result["thresholds"] = th.tolist()
        result["exact_match"] = float(np.mean(np.all(pred_ind == truth.astype(bool), axis=1)))
        result["f2_per_example"] = {
            f"{t:.1f}": f_beta_per_example(truth, scores, t, beta=2.0) for t in F2_THRESHOLDS
        }
    ranking = per_class_ranking(truth, scores)
    result["macro_precision"] = float(prf["precision"].mean())
    result["macro_recall"] = float(prf["recall"].mean())
    result["macro_f1"] = float(prf["f"].mean())
    result["roc_auc"] = _nanmean(ranking["roc_auc"])
    result["pr_auc"] = _nanmean(ranking["pr_auc"])
    result["per_class"] = {
        name: {
            "precision": float(prf["precision"][i]),
            "recall": float(prf["recall"][i]),
            "f1": float(prf["f"][i]),
            "support": int(prf["support"][i]),
            "roc_auc": _listing(ranking["roc_auc"])[i],
            "pr_auc": _listing(ranking["pr_auc"])[i],
        }
        for i, name in enumerate(classes)
    }
    return result
