from __future__ import annotations

import numpy as np
import pytest
import torch

from iconolens.data.records import Box
from iconolens.detect.detections import targets_from_boxes
from iconolens.detect.evaluation import coco_average_precision, scored_boxes
from iconolens.detect.measures import (
    ap_under_perturbation,
    average_saliency,
    detection_perturbation_curves,
    perturbed_image,
    pointing_game,
)
from iconolens.errors import BadInputError
from iconolens.evaluate.faithfulness import blurred_copy


def test_pointing_game_hits_only_when_the_peak_is_in_the_box() -> None:
    saliency = np.zeros((20, 20))
    saliency[5, 12] = 1.0  # pixel centre (12.5, 5.5)
    assert pointing_game(saliency, (10, 0, 15, 10))
    assert not pointing_game(saliency, (0, 0, 12, 10))  # half-open: column 12 is outside
    assert pointing_game(saliency, (0, 0, 12, 10), tolerance=1.0)
    assert not pointing_game(np.zeros((20, 20)), (0, 0, 20, 20))  # a flat map points nowhere


def test_average_saliency_aligns_maps_by_their_boxes() -> None:
    ramp = np.arange(8, dtype=np.float32)[None, :].repeat(8, axis=0)  # 0..7 left to right
    first = np.zeros((32, 32), dtype=np.float32)
    first[2:10, 4:12] = ramp
    second = np.full((32, 32), 5.0, dtype=np.float32)
    second[20:28, 16:24] = 3 * ramp + 1  # other place, other scale and offset
    average = average_saliency([first, second], [(4, 2, 12, 10), (16, 20, 24, 28)], size=(8, 8))
    assert np.allclose(average, ramp / 7.0, atol=1e-6)
    with pytest.raises(BadInputError, match="outside its 32x32 map"):
        average_saliency([first], [(40, 40, 50, 50)])


def test_perturbed_image_deletes_and_inserts_the_top_pixels() -> None:
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    blurred = blurred_copy(image)
    saliency = np.zeros((16, 16))
    saliency[:4] = 1.0  # the top quarter of pixels
    deleted = perturbed_image(image, saliency, 0.25, "delete")
    inserted = perturbed_image(image, saliency, 0.25, "insert")
    assert torch.equal(deleted[:, :4], blurred[:, :4]) and torch.equal(deleted[:, 4:], image[:, 4:])
    assert torch.equal(inserted[:, :4], image[:, :4]) and torch.equal(inserted[:, 4:], blurred[:, 4:])
    assert torch.equal(perturbed_image(image, saliency, 0.0, "delete"), image)


def test_deletion_falls_faster_along_the_true_map(region_detector) -> None:
    image = torch.zeros(3, 32, 32)
    image[:, 8:16, 8:16] = 1.0  # only the region the detector uses is bright
    target = targets_from_boxes([[8, 8, 24, 24]], [1], 2)
    good = np.zeros((32, 32))
    good[8:16, 8:16] = 1.0
    good += np.linspace(0, 0.1, 32 * 32).reshape(32, 32)  # break ties
    bad = -good
    curves = detection_perturbation_curves(region_detector, image, good, target, steps=8, batch_size=9,
                                           blur_kernel=5, blur_sigma=2.0)
    worse = detection_perturbation_curves(region_detector, image, bad, target, steps=8, batch_size=9,
                                          blur_kernel=5, blur_sigma=2.0)
    # untouched image: the detection is exactly the target (IoU 1, cos 1) with objectness 1
    assert curves.deletion[0] == pytest.approx(1.0)
    assert curves.deletion_auc < worse.deletion_auc
    assert curves.insertion_auc > worse.insertion_auc


def test_ap_after_perturbation_starts_at_the_plain_ap(region_detector) -> None:
    image = torch.ones(3, 32, 32)
    truth = [[Box(8, 8, 24, 24, "thing")]]
    saliency = np.zeros((32, 32))
    saliency[8:16, 8:16] = 1.0
    plain = coco_average_precision(truth, [scored_boxes(region_detector(image[None])[0], region_detector.classes)],
                                   ["thing"])
    result = ap_under_perturbation(region_detector, [image], [saliency], truth, ["thing"], fractions=(0.0, 1.0))
    assert result.deletion[0].ap50 == pytest.approx(plain.ap50) == pytest.approx(1.0)
    assert result.insertion[-1].ap50 == pytest.approx(plain.ap50)
