"""Classical heads on off-the-shelf features: a linear SVM and a random forest (scikit-learn).

The linear SVM, standardisation included, is folded into the network's final Linear layer, so the
resulting checkpoint keeps the global-average-pooling + linear form that CAM needs; its logits are SVM
margins. A random forest has no such form: it yields scores and metrics, not a checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from iconolens.models.meta import Task


def fit_linear_svm(
    features: np.ndarray, targets: np.ndarray, task: Task, num_classes: int, seed: int, c: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (C, F) and bias (C,) of a Linear layer computing one-vs-rest SVM margins on raw features."""
    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(axis=0)
    sigma = x.std(axis=0)
    sigma[sigma < 1e-12] = 1.0
    z = (x - mu) / sigma
    if task == "multilabel":
        svm = OneVsRestClassifier(LinearSVC(C=c, random_state=seed, max_iter=5000))
        svm.fit(z, np.asarray(targets, dtype=np.int64))
        w = np.vstack([_estimator_linear(e, z.shape[1])[0] for e in svm.estimators_])
        b = np.array([_estimator_linear(e, z.shape[1])[1] for e in svm.estimators_])
    else:
        svm = LinearSVC(C=c, random_state=seed, max_iter=5000)
        svm.fit(z, np.asarray(targets, dtype=np.int64))
        w_fit, b_fit = svm.coef_, svm.intercept_
        w = np.zeros((num_classes, z.shape[1]))
        b = np.full(num_classes, -1e3)  # a class absent from training is never predicted
        if len(svm.classes_) == 2:
            # one margin m for the second class; logits (-m/2, m/2) keep the same decision and difference
            w[svm.classes_[0]], b[svm.classes_[0]] = -w_fit[0] / 2, -b_fit[0] / 2
            w[svm.classes_[1]], b[svm.classes_[1]] = w_fit[0] / 2, b_fit[0] / 2
        else:
            w[svm.classes_], b[svm.classes_] = w_fit, b_fit
    # margin = w . (x - mu) / sigma + b  =  (w / sigma) . x + (b - w . (mu / sigma))
    weight = w / sigma[None, :]
    bias = b - (w * (mu / sigma)[None, :]).sum(axis=1)
    return torch.from_numpy(weight.astype(np.float32)), torch.from_numpy(bias.astype(np.float32))


def _estimator_linear(estimator: object, dims: int) -> tuple[np.ndarray, float]:
    if hasattr(estimator, "coef_"):
        return np.asarray(estimator.coef_)[0], float(np.asarray(estimator.intercept_)[0])
    # a class that is always (or never) present: a constant predictor
    constant = float(np.asarray(estimator.predict(np.zeros((1, dims))))[0])
    return np.zeros(dims), 1e3 if constant > 0.5 else -1e3


def random_forest_scores(
    train_features: np.ndarray,
    train_targets: np.ndarray,
    eval_features: np.ndarray,
    task: Task,
    num_classes: int,
    seed: int,
    trees: int = 300,
) -> np.ndarray:
    """(N_eval, C) class probabilities of a random forest fitted on the training features."""
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1)
    forest.fit(train_features, train_targets)
    proba = forest.predict_proba(eval_features)
    out = np.zeros((len(eval_features), num_classes))
    if task == "multilabel":
        for c, p in enumerate(proba):
            classes = list(forest.classes_[c])
            out[:, c] = p[:, classes.index(1)] if 1 in classes else 0.0
    else:
        out[:, forest.classes_] = proba
    return out
