"""The classical baseline of the iMet study: a bag of SIFT visual words and an RBF SVM.

SIFT descriptors (OpenCV) of the training images are clustered by k-means into a vocabulary
(the study compares 500, 1000 and 2500 words); each image becomes its L1-normalised word histogram, and
an RBF-kernel SVM, one-vs-rest, is chosen by cross-validated grid search over C in {0.1, 1, 10} and
gamma in {scale, auto}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from iconolens.progress import progress

VOCABULARY_SIZES = (500, 1000, 2500)
SVM_GRID = {"estimator__C": [0.1, 1.0, 10.0], "estimator__gamma": ["scale", "auto"]}


def sift_descriptors(image: np.ndarray, max_keypoints: int = 500) -> np.ndarray:
    """(K, 128) float32 SIFT descriptors of an RGB or grey uint8 image (K may be 0)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    sift = cv2.SIFT_create(nfeatures=max_keypoints)
    _, descriptors = sift.detectAndCompute(grey, None)
    if descriptors is None:
        return np.zeros((0, 128), dtype=np.float32)
    return descriptors.astype(np.float32)


def fit_vocabulary(
    descriptors: Sequence[np.ndarray], size: int, seed: int, max_samples: int = 100_000, threads: int = 1
) -> MiniBatchKMeans:
    """k-means vocabulary of ``size`` words on (a seeded sample of at most ``max_samples``) descriptors.

    Mini-batch k-means, one initialisation, at most 20 passes; BLAS is held to ``threads`` threads, as
    oversubscribed threads made it several times slower on a shared machine.
    """
    stacked = np.concatenate([d for d in descriptors if len(d)], axis=0) if descriptors else np.zeros((0, 128))
    if len(stacked) < size:
        raise ValueError(f"only {len(stacked)} SIFT descriptors for a vocabulary of {size} words")
    rng = np.random.default_rng(seed)
    if len(stacked) > max_samples:
        stacked = stacked[rng.choice(len(stacked), max_samples, replace=False)]
    kmeans = MiniBatchKMeans(n_clusters=size, random_state=seed, n_init=1, max_iter=20, batch_size=2048)
    with threadpool_limits(limits=threads):
        return kmeans.fit(stacked)


def word_histograms(descriptors: Sequence[np.ndarray], vocabulary: MiniBatchKMeans) -> np.ndarray:
    """(N, V) L1-normalised counts of visual words per image (all zeros for an image without keypoints)."""
    size = vocabulary.n_clusters
    out = np.zeros((len(descriptors), size), dtype=np.float64)
    with threadpool_limits(limits=1):
        for i, d in enumerate(descriptors):
            if len(d):
                counts = np.bincount(vocabulary.predict(d), minlength=size)
                out[i] = counts / counts.sum()
    return out


def fit_word_svm(histograms: np.ndarray, labels: np.ndarray, seed: int = 0, folds: int = 3) -> GridSearchCV:
    """One-vs-rest RBF SVM on word histograms, C and gamma chosen by stratified k-fold accuracy."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    cv = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    search = GridSearchCV(OneVsRestClassifier(SVC(kernel="rbf")), SVM_GRID, cv=cv, scoring="accuracy", n_jobs=1)
    with threadpool_limits(limits=1):
        return search.fit(histograms, labels)


def svm_scores(svm: GridSearchCV, histograms: np.ndarray) -> np.ndarray:
    """(N, C) one-vs-rest margins; for two classes the single margin m becomes columns (-m, m)."""
    scores = svm.decision_function(histograms)
    return np.stack([-scores, scores], axis=1) if scores.ndim == 1 else scores


@dataclass
class BagOfWordsClassifier:
    """A fitted vocabulary plus a one-vs-rest RBF SVM over word histograms."""

    vocabulary: MiniBatchKMeans
    svm: GridSearchCV
    max_keypoints: int

    def decision_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) one-vs-rest SVM margins (higher = more likely the class)."""
        hist = word_histograms([sift_descriptors(im, self.max_keypoints) for im in images], self.vocabulary)
        return svm_scores(self.svm, hist)

    @property
    def best_params(self) -> dict[str, object]:
        return {k.replace("estimator__", ""): v for k, v in self.svm.best_params_.items()}


def train_bag_of_words(
    images: Sequence[np.ndarray],
    labels: np.ndarray,
    vocabulary_size: int = 500,
    seed: int = 0,
    max_keypoints: int = 500,
    folds: int = 3,
) -> BagOfWordsClassifier:
    """Fit the vocabulary and grid-search the SVM on uint8 RGB ``images`` with class-index ``labels``.

    Labels are (N,) class indices; one-vs-rest is used for every class count (for two classes the
    decision scores have two columns, one per class, like the multi-class case).
    """
    descriptors = [sift_descriptors(im, max_keypoints) for im in progress(images, "SIFT")]
    vocabulary = fit_vocabulary(descriptors, vocabulary_size, seed)
    svm = fit_word_svm(word_histograms(descriptors, vocabulary), labels, seed, folds)
    return BagOfWordsClassifier(vocabulary, svm, max_keypoints)
