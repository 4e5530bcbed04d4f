"""The SIFT bag-of-words baseline separates two textures and builds honest histograms."""

from __future__ import annotations

import numpy as np
import pytest

from iconolens.models.bow import fit_vocabulary, sift_descriptors, train_bag_of_words, word_histograms


def _texture(kind: str, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    image = np.full((size, size, 3), 128, dtype=np.uint8)
    if kind == "checker":
        cell = int(rng.integers(8, 13))
        yy, xx = np.mgrid[:size, :size]
        image[((yy // cell + xx // cell) % 2) == 0] = 20
    else:
        for _ in range(12):
            cy, cx = rng.integers(8, size - 8, size=2)
            r = int(rng.integers(3, 7))
            yy, xx = np.ogrid[:size, :size]
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 240
    noise = rng.integers(-10, 11, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def test_histograms_are_normalised_word_counts(rng):
    images = [_texture("checker", rng) for _ in range(3)]
    descriptors = [sift_descriptors(im) for im in images]
    vocabulary = fit_vocabulary(descriptors, 8, seed=0)
    hist = word_histograms(descriptors + [np.zeros((0, 128), np.float32)], vocabulary)
    assert hist.shape == (4, 8)
    assert np.allclose(hist[:3].sum(axis=1), 1.0)
    assert np.all(hist[3] == 0)
    words = vocabulary.predict(descriptors[0])
    assert hist[0] == pytest.approx(np.bincount(words, minlength=8) / len(words))


def test_a_vocabulary_larger_than_the_descriptors_is_refused(rng):
    with pytest.raises(ValueError, match="SIFT descriptors for a vocabulary of 5000"):
        fit_vocabulary([sift_descriptors(_texture("blobs", rng))], 5000, seed=0)


def test_bag_of_words_svm_separates_two_textures(rng):
    kinds = ["checker", "blobs"] * 8
    images = [_texture(k, rng) for k in kinds]
    labels = np.array([0 if k == "checker" else 1 for k in kinds])
    model = train_bag_of_words(images, labels, vocabulary_size=16, seed=0)
    assert set(model.best_params) == {"C", "gamma"}
    test_kinds = ["checker", "blobs"] * 4
    scores = model.decision_scores([_texture(k, rng) for k in test_kinds])
    assert scores.shape == (8, 2)
    predicted = scores.argmax(axis=1)
    assert np.mean(predicted == np.array([0 if k == "checker" else 1 for k in test_kinds])) >= 0.875
