"""Classification metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from iconolens.models.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    f_beta_per_example,
    per_class_ranking,
    precision_recall_f1,
    top_k_accuracy,
    tune_thresholds,
)


@pytest.fixture
def multiclass(rng):
    y = rng.integers(0, 7, size=200)
    logits = rng.normal(size=(200, 7))
    logits[np.arange(200), y] += 1.0  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_accuracy_top5_and_confusion_match_sklearn(multiclass):
    y, p = multiclass
    pred = p.argmax(1)
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, pred))
    assert top_k_accuracy(y, p, 5) == pytest.approx(skm.top_k_accuracy_score(y, p, k=5, labels=range(7)))
    assert np.array_equal(confusion_matrix(y, pred, 7), skm.confusion_matrix(y, pred, labels=range(7)))


def test_per_class_and_macro_prf_match_sklearn(multiclass):
    y, p = multiclass
    pred = p.argmax(1)
    result = classification_metrics(y, p, [f"c{i}" for i in range(7)])
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=range(7), zero_division=0
    )
    got = result["per_class"]
    assert [got[f"c{i}"]["precision"] for i in range(7)] == pytest.approx(precision)
    assert [got[f"c{i}"]["recall"] for i in range(7)] == pytest.approx(recall)
    assert [got[f"c{i}"]["f1"] for i in range(7)] == pytest.approx(f1)
    assert [got[f"c{i}"]["support"] for i in range(7)] == list(support)
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    # one-vs-rest macro ROC-AUC of scikit-learn's multi-class form
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))


def test_precision_recall_of_a_class_never_predicted_is_zero():
    truth = np.array([[1, 0], [1, 0], [0, 1]])
    pred = np.array([[1, 0], [1, 0], [1, 0]])
    prf = precision_recall_f1(truth, pred)
    assert prf["precision"].tolist() == pytest.approx([2 / 3, 0.0])
    assert prf["recall"].tolist() == pytest.approx([1.0, 0.0])
    assert prf["f"].tolist() == pytest.approx([0.8, 0.0])


def test_roc_auc_equals_the_fraction_of_correctly_ordered_pairs(rng):
    truth = rng.integers(0, 2, size=(40, 3))
    scores = np.round(rng.random((40, 3)), 1)  # many ties
    ranking = per_class_ranking(truth, scores)
    for c in range(3):
        pos = scores[truth[:, c] == 1, c]
        neg = scores[truth[:, c] == 0, c]
        pairs = [(a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg)]
        assert ranking["roc_auc"][c] == pytest.approx(np.mean(pairs))


def test_pr_auc_is_average_precision_by_hand():
    # ranking: pos, neg, pos, neg -> precisions at the positives: 1/1 and 2/3
    truth = np.array([[1], [0], [1], [0]])
    scores = np.array([[0.9], [0.8], [0.7], [0.1]])
    assert per_class_ranking(truth, scores)["pr_auc"][0] == pytest.approx((1 + 2 / 3) / 2)


def test_ranking_of_a_class_without_negatives_is_undefined():
    truth = np.array([[1, 0], [1, 1], [1, 0]])
    ranking = per_class_ranking(truth, np.random.default_rng(1).random((3, 2)))
    assert np.isnan(ranking["roc_auc"][0]) and np.isfinite(ranking["roc_auc"][1])


def test_f2_per_example_by_hand():
    truth = np.array([[1, 1, 0, 0]])
    probs = np.array([[0.9, 0.1, 0.6, 0.1]])
    # at 0.5: predicted {0, 2}, tp = 1, precision 1/2, recall 1/2 -> F2 = 5*0.25/(4*0.5+0.5) = 0.5
    assert f_beta_per_example(truth, probs, 0.5) == pytest.approx(0.5)
    # at 0.05: everything predicted, precision 1/2, recall 1 -> F2 = 5*0.5/(2+1) = 5/6
    assert f_beta_per_example(truth, probs, 0.05) == pytest.approx(5 / 6)


def test_f2_per_example_matches_sklearn_samples_average(rng):
    truth = rng.integers(0, 2, size=(60, 6))
    truth[np.arange(60), rng.integers(0, 6, size=60)] = 1  # every example has a label
    probs = rng.random((60, 6))
    for threshold in (0.2, 0.3, 0.4, 0.5):
        pred = (probs > threshold).astype(int)
        expected = skm.fbeta_score(truth, pred, beta=2, average="samples", zero_division=0)
        assert f_beta_per_example(truth, probs, threshold) == pytest.approx(expected)


def test_multilabel_report_uses_thresholds_and_lists_f2_at_four_thresholds(rng):
    truth = rng.integers(0, 2, size=(30, 3))
    probs = rng.random((30, 3))
    thresholds = [0.2, 0.5, 0.7]
    result = classification_metrics(truth, probs, ["a", "b", "c"], "multilabel", thresholds)
    pred = probs > np.array(thresholds)
    assert result["macro_f1"] == pytest.approx(skm.f1_score(truth, pred, average="macro", zero_division=0))
    assert result["exact_match"] == pytest.approx(skm.accuracy_score(truth, pred))
    assert sorted(result["f2_per_example"]) == ["0.2", "0.3", "0.4", "0.5"]


def test_tuned_threshold_separates_a_separable_class():
    truth = np.array([[1], [1], [0], [0], [0]])
    probs = np.array([[0.35], [0.4], [0.1], [0.2], [0.25]])
    threshold = tune_thresholds(truth, probs)[0]
    assert 0.25 <= threshold < 0.35
    assert np.array_equal(probs[:, 0] > threshold, truth[:, 0] == 1)
