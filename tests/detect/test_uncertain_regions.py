"""Uncertain regions: anchors and proposals on them are drawn neither as objects nor as background."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.faster_rcnn import build_faster_rcnn
from iconolens.detect.training import UncertainRegionsIgnored, prepare_image, train_detector

TRUE_BOX = [0.0, 0.0, 20.0, 20.0]
UNCERTAIN = [40.0, 40.0, 60.0, 60.0]
CANDIDATES = torch.tensor([
    TRUE_BOX,                  # the object: foreground in both stages
    UNCERTAIN,                 # IoU 1 with the uncertain box
    [44.0, 40.0, 64.0, 60.0],  # IoU 320 / 480 = 0.667 with it
    [50.0, 40.0, 70.0, 60.0],  # IoU 200 / 600 = 0.333
    [54.0, 40.0, 74.0, 60.0],  # IoU 120 / 680 = 0.176
    [100.0, 100.0, 120.0, 120.0],  # far from everything
])


def _targets(with_uncertain: bool) -> list[dict]:
    target = {"boxes": torch.tensor([TRUE_BOX]), "labels": torch.tensor([1])}
    if with_uncertain:
        target["uncertain"] = torch.tensor([UNCERTAIN])
    return [target]


def test_anchors_on_an_uncertain_region_are_ignored_below_the_background_threshold_of_0_3() -> None:
    model = build_faster_rcnn(1, backbone_weights=False, min_size=64, max_size=128)
    plain, _ = model.rpn.assign_targets_to_anchors([CANDIDATES], _targets(False))
    assert plain[0].tolist() == [1, 0, 0, 0, 0, 0]
    with UncertainRegionsIgnored(model):
        ignored, _ = model.rpn.assign_targets_to_anchors([CANDIDATES], _targets(True))
    assert ignored[0].tolist() == [1, -1, -1, -1, 0, 0]  # 0.333 >= 0.3 is ignored, 0.176 stays background
    assert "assign_targets_to_anchors" not in model.rpn.__dict__  # the model's own method is back


def test_box_head_proposals_on_an_uncertain_region_are_not_sampled_as_background() -> None:
    model = build_faster_rcnn(1, backbone_weights=False, min_size=64, max_size=128)
    heads = model.roi_heads
    _, _, plain, _ = heads.select_training_samples([CANDIDATES.clone()], _targets(False))
    with UncertainRegionsIgnored(model):
        kept, _, labels, _ = heads.select_training_samples([CANDIDATES.clone()], _targets(True))
    # the box head's background threshold is IoU 0.5: the two candidates at 1 and 0.667 leave the background
    assert sorted(plain[0].tolist()) == [0, 0, 0, 0, 0, 1, 1]  # six candidates and the true box appended
    assert sorted(labels[0].tolist()) == [0, 0, 0, 1, 1]
    left = {tuple(b) for b in kept[0].tolist()}
    assert tuple(UNCERTAIN) not in left and (44.0, 40.0, 64.0, 60.0) not in left
    assert (50.0, 40.0, 70.0, 60.0) in left
    assert "select_training_samples" not in heads.__dict__ and "assign_targets_to_proposals" not in heads.__dict__


def test_training_takes_uncertain_boxes_in_original_pixels(tmp_path) -> None:
    samples = []
    for i in range(3):
        pixels = np.zeros((64, 128, 3), dtype=np.uint8)
        pixels[8:40, 8:40] = 230
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(f"s{i}", path, ("square",), (Box(8, 8, 40, 40, "square"),), 128, 64))
    dataset = Dataset(tuple(samples), ("square",), multi_label=True, root=tmp_path)
    _, meta = train_detector(dataset, iterations=1, batch_size=3, min_size=32, max_size=64, backbone_weights=False,
                             uncertain={"s0": [[64.0, 8.0, 96.0, 40.0]], "s2": [[0, 0, 10, 10], [90, 30, 120, 60]]})
    assert meta.metrics["uncertain_boxes"] == 3
    # 128 x 64 pixels at shorter side 32, longer at most 64: half size, like the image's own boxes
    item = prepare_image(samples[0], ("square",), 32, 64, uncertain=[[64.0, 8.0, 96.0, 40.0]])
    assert item.boxes.tolist() == [[4.0, 4.0, 20.0, 20.0]] and item.uncertain.tolist() == [[32.0, 4.0, 48.0, 20.0]]
