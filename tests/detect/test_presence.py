"""Presence gating: detection scores times the classifier's probability of their class in the image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.evaluation import ScoredBox, coco_average_precision
from iconolens.detect.presence import gate_by_presence, presence_probabilities
from iconolens.models.meta import ModelMeta


def _collection(tmp_path: Path, colours: list[tuple[int, int, int]]) -> Dataset:
    samples = []
    for i, colour in enumerate(colours):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((24, 32, 3), colour, dtype=np.uint8)).save(path)
        samples.append(Sample(f"s{i}", path, (), (), 32, 24))
    return Dataset(tuple(samples), ("red",), multi_label=True, root=tmp_path)


class RedMinusBlue(nn.Module):
    """One logit: the mean of the normalised red channel minus that of the blue one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2)))[:, None]


def test_presence_is_the_classifiers_probability_of_each_image(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [(0, 0, 255), (255, 0, 0)])
    meta = ModelMeta(classes=("red",), backbone="test", input_size=16, task="multilabel")
    presence = presence_probabilities(RedMinusBlue().eval(), meta, dataset, workers=0)
    mean, std = meta.mean, meta.std

    def expected(r: float, b: float) -> float:  # ImageNet normalisation of a flat colour, then a sigmoid
        logit = (r - mean[0]) / std[0] - (b - mean[2]) / std[2]
        return 1.0 / (1.0 + math.exp(-logit))

    assert presence["s1"]["red"] == pytest.approx(expected(1.0, 0.0), abs=1e-5)  # about 0.983
    assert presence["s0"]["red"] == pytest.approx(expected(0.0, 1.0), abs=1e-5)  # about 0.016


def test_gating_multiplies_scores_and_keeps_the_order_within_an_image(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [(0, 0, 0), (0, 0, 0), (0, 0, 0)])
    predictions = [
        [ScoredBox(0, 0, 5, 5, "red", 0.8), ScoredBox(5, 5, 9, 9, "red", 0.4), ScoredBox(1, 1, 4, 4, "dog", 0.7)],
        [ScoredBox(0, 0, 5, 5, "red", 0.6)],
        [ScoredBox(0, 0, 5, 5, "red", 0.3)],
    ]
    presence = {"s0": {"red": 0.5}, "s1": {"red": 0.25}}  # s2 unread by the classifier; "dog" unknown to it
    gated = gate_by_presence(dataset, predictions, presence)
    assert [d.score for d in gated[0]] == pytest.approx([0.4, 0.2, 0.7])
    assert [d.score for d in gated[1]] == pytest.approx([0.15])
    assert [d.score for d in gated[2]] == pytest.approx([0.3])
    assert [d.xyxy for d in gated[0]] == [d.xyxy for d in predictions[0]]


def test_gating_ranks_a_false_positive_of_an_empty_painting_below_a_true_one(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [(0, 0, 0), (0, 0, 0)])
    truth = [[Box(10, 10, 50, 50, "red")], []]
    predictions = [[ScoredBox(10, 10, 50, 50, "red", 0.6)], [ScoredBox(0, 0, 20, 20, "red", 0.8)]]
    # the false positive first: recall 1 is reached at precision 1/2, so every recall point has precision 1/2
    assert coco_average_precision(truth, predictions, ["red"]).ap50 == pytest.approx(0.5)
    gated = gate_by_presence(dataset, predictions, {"s0": {"red": 0.9}, "s1": {"red": 0.1}})  # 0.54 against 0.08
    assert coco_average_precision(truth, gated, ["red"]).ap50 == pytest.approx(1.0)


def test_presence_needs_no_labels_and_skips_an_unreadable_image(tmp_path: Path) -> None:
    dataset = _collection(tmp_path, [(255, 0, 0), (0, 0, 255), (255, 0, 0)])
    (tmp_path / "1.png").write_bytes(b"not a picture")
    meta = ModelMeta(classes=("red",), backbone="test", input_size=16, task="multiclass")  # labels are ()
    presence = presence_probabilities(RedMinusBlue().eval(), meta, dataset, workers=0, batch_size=2)
    assert set(presence) == {"s0", "s2"}
    # a one-class softmax is 1 whatever the logit
    assert presence["s0"]["red"] == pytest.approx(1.0) and presence["s2"]["red"] == pytest.approx(1.0)
