from __future__ import annotations

import numpy as np
import pytest
import torch

from iconolens.detect.detections import Detections, targets_from_boxes
from iconolens.errors import BadInputError
from iconolens.explain.drise import detection_similarity, drise, generate_masks, mask_weights


def _detections(boxes, probs, objectness=None) -> Detections:
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return Detections(
        boxes, torch.ones(len(boxes)), torch.tensor(probs, dtype=torch.float32),
        None if objectness is None else torch.tensor(objectness, dtype=torch.float32),
    )


def test_similarity_is_iou_times_cosine_times_objectness() -> None:
    target = _detections([[0, 0, 10, 10]], [[1.0, 0.0]])
    proposals = _detections([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]],
                            [[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]], [0.5, 0.9, 1.0])
    # IoU 50/150 = 1/3, cos = 0.6, objectness 0.5 -> 0.1; orthogonal vectors -> 0; disjoint boxes -> 0
    expected = torch.tensor([[1 / 3 * 0.6 * 0.5, 0.0, 0.0]])
    assert torch.allclose(detection_similarity(target, proposals), expected, atol=1e-6)


def test_missing_objectness_counts_as_one() -> None:
    target = _detections([[0, 0, 4, 4]], [[0.0, 1.0]])
    proposal = _detections([[0, 0, 4, 2]], [[0.0, 2.0]])
    assert detection_similarity(target, proposal).item() == pytest.approx(0.5)


def test_mask_weight_is_best_similarity_per_masked_image() -> None:
    targets = _detections([[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 1.0], [0, 1.0]])
    per_image = [
        _detections([[0, 0, 10, 5], [0, 0, 10, 10]], [[0, 1.0], [0, 1.0]], [1.0, 0.3]),  # 0.5 vs 0.3 -> 0.5
        Detections.empty(2),
        _detections([[20, 20, 30, 30]], [[0, 1.0]], [0.7]),
    ]
    expected = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.7]])
    assert torch.allclose(mask_weights(targets, per_image), expected, atol=1e-6)


def test_masks_depend_only_on_seed_and_index() -> None:
    whole = generate_masks(0, 8, (20, 30), grid=4, keep=0.5, seed=3)
    part = generate_masks(5, 3, (20, 30), grid=4, keep=0.5, seed=3)
    assert whole.shape == (8, 20, 30)
    assert torch.equal(whole[5:], part)
    assert float(whole.min()) >= 0.0 and float(whole.max()) <= 1.0
    assert not torch.equal(whole, generate_masks(0, 8, (20, 30), grid=4, keep=0.5, seed=4))


def test_mask_mean_matches_keep_probability() -> None:
    masks = generate_masks(0, 400, (32, 32), grid=8, keep=0.3, seed=0)
    assert float(masks.mean()) == pytest.approx(0.3, abs=0.02)


def test_saliency_concentrates_on_the_region_the_detector_uses(region_detector) -> None:
    image = torch.ones(3, 32, 32)
    result = drise(region_detector, image, n_masks=600, grid=4, batch_size=50, seed=0)
    saliency = result.maps[0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:16, 8:16] = True
    assert result.masks_used == 600 and region_detector.calls == 601  # one unmasked pass for the targets
    assert inside.flatten()[saliency.flatten().argmax()]
    # pixels two mask cells away from the region are independent of it: they only get the average weight,
    # which every pixel of the region's core exceeds
    assert float(saliency[10:14, 10:14].min()) > float(saliency[24:, 24:].max())
    assert float(saliency[10:14, 10:14].min()) > float(saliency[:, 24:].max())


def test_same_map_for_any_batch_size(region_detector) -> None:
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = drise(region_detector, image, n_masks=40, grid=4, batch_size=3, seed=7).maps
    b = drise(region_detector, image, n_masks=40, grid=4, batch_size=16, seed=7).maps
    c = drise(region_detector, image, n_masks=40, grid=4, batch_size=16, seed=8).maps
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-3)


def test_all_targets_of_an_image_in_one_pass(region_detector) -> None:
    image = torch.ones(3, 32, 32)
    targets = targets_from_boxes([[8, 8, 24, 24], [0, 0, 4, 4]], [1, 1], 2)
    result = drise(region_detector, image, targets, n_masks=50, grid=4, batch_size=25, seed=0)
    assert result.maps.shape == (2, 32, 32)
    assert region_detector.calls == 50  # targets were given: no unmasked pass, one pass over the masks
    single = drise(region_detector, image, targets.select([0]), n_masks=50, grid=4, batch_size=25, seed=0)
    assert torch.allclose(result.maps[0], single.maps[0], atol=1e-6)
    assert float(result.maps[1].max()) == 0.0  # the second box never overlaps the detection


def test_stopping_rule_ends_early_and_reports_masks(region_detector) -> None:
    image = torch.ones(3, 32, 32)
    full = drise(region_detector, image, n_masks=1000, grid=4, batch_size=64, seed=0)
    early = drise(region_detector, image, n_masks=1000, grid=4, batch_size=64, seed=0, tolerance=0.05, window=100)
    assert early.converged and early.masks_used < 1000 and early.masks_used % 100 == 0
    assert not full.converged and full.masks_used == 1000
    correlation = np.corrcoef(early.maps[0].flatten().numpy(), full.maps[0].flatten().numpy())[0, 1]
    assert correlation > 0.9
    # the first check only records the map: an enormous tolerance stops at the second check
    assert drise(region_detector, image, n_masks=1000, grid=4, seed=0, tolerance=1e9, window=100).masks_used == 200
    never = drise(region_detector, image, n_masks=300, grid=4, seed=0, tolerance=0.0, window=100)
    assert never.masks_used == 300 and not never.converged


def test_stopping_rule_does_not_depend_on_batch_size(region_detector) -> None:
    image = torch.ones(3, 32, 32)
    a = drise(region_detector, image, n_masks=1000, grid=4, batch_size=7, seed=0, tolerance=0.05, window=100)
    b = drise(region_detector, image, n_masks=1000, grid=4, batch_size=64, seed=0, tolerance=0.05, window=100)
    assert a.masks_used == b.masks_used
    assert torch.allclose(a.maps, b.maps, atol=1e-6)


def test_detector_that_never_detects_gives_zero_maps_and_says_so(blind_detector) -> None:
    targets = targets_from_boxes([[2, 2, 10, 10]], [1], 2)
    result = drise(blind_detector, torch.ones(3, 16, 16), targets, n_masks=20, grid=4, batch_size=8)
    assert result.no_detections
    assert float(result.maps.abs().max()) == 0.0
    assert "no detections on any of the 20 masked images" in result.summary()


def test_target_box_outside_image_is_refused(region_detector) -> None:
    targets = targets_from_boxes([[40, 40, 60, 60]], [1], 2)
    with pytest.raises(BadInputError, match="outside the 32x32 image"):
        drise(region_detector, torch.ones(3, 32, 32), targets, n_masks=4)


def test_mismatched_class_count_is_refused(region_detector) -> None:
    targets = targets_from_boxes([[8, 8, 24, 24]], [1], 3)
    with pytest.raises(BadInputError, match="3 class probabilities but the detector has 2 classes"):
        drise(region_detector, torch.ones(3, 32, 32), targets, n_masks=4)
    with pytest.raises(BadInputError, match="outside the detector's 2 classes"):
        targets_from_boxes([[8, 8, 24, 24]], [2], 2)


def test_stopping_point_from_the_window_history_matches_the_rule(region_detector) -> None:
    from iconolens.explain.drise import stopping_point

    image = torch.ones(3, 32, 32)
    history: list = []
    full = drise(region_detector, image, n_masks=800, grid=4, batch_size=30, seed=0, window=100,
                 on_window=lambda used, maps: history.append((used, maps.clone())))
    assert [used for used, _ in history] == list(range(100, 801, 100))
    assert torch.allclose(history[-1][1], full.maps)
    for tolerance in (0.2, 0.05, 0.02):
        early = drise(region_detector, image, n_masks=800, grid=4, seed=0, tolerance=tolerance, window=100)
        expected = early.masks_used if early.converged else None
        assert stopping_point(history, tolerance) == expected
