from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.checkpoint import DetectorMeta, load_detector, save_detector
from iconolens.detect.evaluation import evaluate_detector
from iconolens.detect.faster_rcnn import BACKBONES, FasterRCNNDetector, build_faster_rcnn, classification_trunk
from iconolens.detect.training import (
    boxed_or_negative,
    BackgroundFromEmptyImages,
    BalancedBatches,
    TrainingImage,
    check_detector,
    held_out_slice,
    read_coco_detections,
    train_detector,
    with_pseudo_boxes,
)
from iconolens.errors import BadAnnotationError, BadCheckpointError, BadInputError
from iconolens.models.backbones import backbone_spec, build_classifier


def _squares(tmp_path: Path, n: int = 4, size: int = 64) -> Dataset:
    """Dark noisy images each holding one bright square, annotated with its box."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        pixels = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        x, y = rng.integers(0, size - 24, size=2)
        pixels[y:y + 20, x:x + 20] = 230
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(f"img{i}", path, ("square",), (Box(x, y, x + 20, y + 20, "square"),), size, size))
    return Dataset(tuple(samples), ("square",), root=tmp_path)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_faster_rcnn(2, backbone_weights=False, min_size=64, max_size=64, score_threshold=0.0)


def test_class_probabilities_are_the_box_heads_softmax(tiny_model) -> None:
    detector = FasterRCNNDetector(tiny_model, ("a", "b"))
    found = detector(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert len(found) == 2 and detector.classes == ("__background__", "a", "b")
    d = found[0]
    assert len(d) > 0 and d.class_probs.shape == (len(d), 3)
    assert torch.allclose(d.class_probs.sum(dim=1), torch.ones(len(d)), atol=1e-5)
    # each box's score is the probability of the class it was reported for, never the background's
    assert bool((d.labels >= 1).all())
    assert torch.allclose(d.class_probs.gather(1, d.labels[:, None])[:, 0], d.scores, atol=1e-6)


def test_class_names_must_match_the_model(tiny_model) -> None:
    with pytest.raises(BadInputError, match="predicts 2 object classes but 3"):
        FasterRCNNDetector(tiny_model, ("a", "b", "c"))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_shipped_backbone_weights_are_loaded(backbone: str) -> None:
    trunk = backbone.removesuffix("_fpn")
    path = backbone_spec(trunk).default_weights()
    if path is None:
        pytest.skip(f"the {trunk} weights package is not installed")
    model = build_faster_rcnn(1, backbone, backbone_weights=True)
    state = torch.load(path, map_location="cpu", weights_only=True)
    stem_key = "features.0.0.weight" if trunk == "mobilenet_v2" else "_conv_stem.weight"
    stages = model.backbone.body if backbone.endswith("_fpn") else model.backbone
    assert torch.equal(next(iter(stages.children()))[0].weight, state[stem_key])


@pytest.mark.parametrize("trunk", ["mobilenet_v2", "efficientnet_lite0"])
def test_detection_trunk_computes_the_classifiers_features(trunk: str, tmp_path: Path) -> None:
    """Frozen batch norm and the regrouped stages leave the ImageNet network's feature map unchanged."""
    torch.manual_seed(0)
    classifier = build_classifier(trunk, 3, pretrained=False).eval()
    for module in classifier.modules():  # non-trivial statistics, so that a dropped one would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    torch.save(classifier.state_dict(), tmp_path / "weights.pth")
    image = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        expected = classifier.features(image) if trunk == "mobilenet_v2" else classifier.extract_features(image)
        stages, stride16 = classification_trunk(trunk, tmp_path / "weights.pth")
        actual = stages(image)
        middle = stages[: stride16 + 1](image)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert middle.shape[-2:] == (6, 8) and actual.shape[-2:] == (3, 4)


def test_train_save_load_and_evaluate_on_a_tiny_set(tmp_path: Path) -> None:
    dataset = _squares(tmp_path)
    model, meta = train_detector(dataset, iterations=2, batch_size=2, seed=0, min_size=64, max_size=64,
                                 backbone_weights=False)
    assert meta.classes == ("square",) and meta.metrics["images"] == 4
    save_detector(tmp_path / "model", model, meta)
    detector, loaded_meta = load_detector(tmp_path / "model")
    assert loaded_meta == meta
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    expected = FasterRCNNDetector(model, meta.classes)(image)[0]
    again = detector(image)[0]
    # Loading folds the frozen batch norms into the convolutions: the same detections to float32 rounding.
    torch.testing.assert_close(again.boxes, expected.boxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(again.class_probs, expected.class_probs, rtol=0, atol=1e-5)
    scores, predictions = evaluate_detector(detector, dataset, min_size=64, max_size=64)
    assert len(predictions) == 4 and scores.images == 4
    assert 0.0 <= scores.ap <= scores.ap50 <= 1.0


def test_training_is_seeded(tmp_path: Path) -> None:
    dataset = _squares(tmp_path, n=2)
    a, _ = train_detector(dataset, iterations=1, batch_size=2, seed=3, min_size=64, max_size=64, backbone_weights=False)
    b, _ = train_detector(dataset, iterations=1, batch_size=2, seed=3, min_size=64, max_size=64, backbone_weights=False)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_collection_without_boxes_is_refused(tmp_path: Path) -> None:
    dataset = _squares(tmp_path, n=1)
    empty = dataset.with_samples(tuple(s.__class__(s.id, s.path, s.labels) for s in dataset.samples))
    with pytest.raises(BadAnnotationError, match="no boxes to train a detector on"):
        train_detector(empty, iterations=1, backbone_weights=False)


def test_pseudo_boxes_replace_ground_truth(tmp_path: Path) -> None:
    dataset = _squares(tmp_path, n=2)
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([
        {"image_id": "img0", "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9},
        {"image_id": "img0", "category_id": 1, "bbox": [5, 5, 5, 5], "score": 0.1},
    ]))
    pseudo = with_pseudo_boxes(dataset, read_coco_detections(path), path, min_score=0.5)
    assert pseudo.samples[0].boxes == (Box(1.0, 2.0, 11.0, 22.0, "square"),)
    assert pseudo.samples[1].boxes == ()


def test_an_image_labelled_with_a_boxed_class_but_without_its_box_is_left_out(tmp_path: Path) -> None:
    square = Box(1, 1, 9, 9, "square")
    samples = (
        Sample("boxed", tmp_path / "a.png", ("square",), (square,), 10, 10),
        Sample("unboxed", tmp_path / "b.png", ("square",), (), 10, 10),  # labelled, no box: left out
        Sample("empty", tmp_path / "c.png", (), (), 10, 10),  # labelled with nothing: a negative
        Sample("dog", tmp_path / "d.png", ("dog",), (), 10, 10),  # no class of the boxes: a negative
    )
    kept = boxed_or_negative(Dataset(samples, ("square", "dog"), multi_label=True, root=tmp_path))
    assert [s.id for s in kept.samples] == ["boxed", "empty", "dog"]


def test_pseudo_boxes_for_unknown_image_are_refused(tmp_path: Path) -> None:
    dataset = _squares(tmp_path, n=1)
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([{"image_id": "nope", "category_id": 1, "bbox": [1, 2, 10, 20], "score": 0.9}]))
    with pytest.raises(BadAnnotationError, match="'nope', which is not in the collection"):
        with_pseudo_boxes(dataset, read_coco_detections(path), path)
    path.write_text(json.dumps([{"image_id": "img0", "bbox": [1, 2]}]))
    with pytest.raises(BadAnnotationError, match="malformed bbox"):
        read_coco_detections(path)


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "detector.json").write_text(json.dumps(DetectorMeta(("a",)).to_json()))
    torch.save({"x": torch.zeros(1)}, tmp_path / "weights.pt")
    with pytest.raises(BadCheckpointError, match="weights do not fit a 1-class detector"):
        load_detector(tmp_path)
    with pytest.raises(BadCheckpointError, match="not a detector folder"):
        load_detector(tmp_path / "missing")


@pytest.mark.slow
def test_pyramid_detector_learns_to_find_squares(tmp_path: Path) -> None:
    """100 steps on 24 images suffice to find held-out squares (false if boxes, flips or labels were mishandled)."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(36):
        pixels = (rng.random((256, 256, 3)) * 60).astype(np.uint8)
        side = int(rng.integers(32, 86))
        x, y = (int(v) for v in rng.integers(0, 256 - side, size=2))
        pixels[y:y + side, x:x + side] = 230
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        box = Box(x, y, x + side, y + side, "square")
        samples.append(Sample(str(i), tmp_path / f"{i}.png", ("square",), (box,), 256, 256))
    train = Dataset(tuple(samples[:24]), ("square",), root=tmp_path)
    test = Dataset(tuple(samples[24:]), ("square",), root=tmp_path)
    model, meta = train_detector(train, iterations=100, batch_size=4, seed=0, min_size=256, max_size=256,
                                 backbone="mobilenet_v2_fpn")
    scores, _ = evaluate_detector(FasterRCNNDetector(model, meta.classes), test, min_size=256, max_size=256)
    assert scores.ap50 > 0.8


def test_balanced_batches_hold_a_fixed_share_of_negatives() -> None:
    has_boxes = [True] * 3 + [False] * 9
    batches = BalancedBatches(has_boxes, batch_size=4, negative_share=0.25, rng=np.random.default_rng(0))
    drawn = [batches.next() for _ in range(9)]
    assert all(sum(not has_boxes[i] for i in b) == 1 and len(b) == 4 for b in drawn)
    # three positives per batch, drawn as whole permutations: each positive exactly 9 times in 9 batches
    counts = np.bincount([i for b in drawn for i in b], minlength=12)
    assert counts[:3].tolist() == [9, 9, 9] and counts[3:].sum() == 9 and counts[3:].max() == 1
    only_positives = BalancedBatches([True, True], batch_size=3, negative_share=0.5, rng=np.random.default_rng(0))
    assert len(only_positives.next()) == 3


def _item(boxes: list[list[float]]) -> TrainingImage:
    return TrainingImage("x", torch.zeros(3, 8, 8, dtype=torch.uint8), torch.tensor(boxes).reshape(-1, 4),
                         torch.ones(len(boxes), dtype=torch.int64), 1.0)


def test_held_out_slice_spares_images_only_when_enough_remain() -> None:
    many = [_item([[0, 0, 4, 4]]) for _ in range(100)] + [_item([]) for _ in range(50)]
    train, held = held_out_slice(many, np.random.default_rng(0))
    assert len(held) == 5 and len(train) == 145 and all(len(t.boxes) for t in held)
    few = [_item([[0, 0, 4, 4]]) for _ in range(12)]
    assert held_out_slice(few, np.random.default_rng(0)) == (few, [])


class _FixedDetections:
    """Stands in for a Faster R-CNN in eval mode: the same boxes and scores for every image."""

    def __init__(self, boxes, scores) -> None:
        self.out = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.tensor(scores, dtype=torch.float32)}

    def __call__(self, images):
        return [self.out for _ in images]


def test_check_counts_detections_and_recall_and_flags_a_collapse() -> None:
    images = [_item([[0, 0, 10, 10], [20, 20, 30, 30]])]
    # one box found exactly, one detection elsewhere, one below the threshold: recall 1/2, 2 detections
    model = _FixedDetections([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.01])
    check = check_detector(model, images, score_threshold=0.05, held_out=True)
    assert (check.detections, check.boxes, check.recall50) == (2, 2, 0.5)
    assert not check.collapsed and check.warning() is None
    silent = check_detector(_FixedDetections([[0, 0, 10, 10]], [0.01]), images, 0.05, held_out=True)
    assert silent.collapsed and silent.recall50 == 0.0
    assert "collapsed to background" in silent.warning() and "1 held-out training images" in silent.warning()


def test_training_records_its_check_and_can_start_from_a_detector(tmp_path: Path) -> None:
    dataset = _squares(tmp_path, n=3)
    first, meta = train_detector(dataset, iterations=1, batch_size=2, seed=0, min_size=64, max_size=64,
                                 backbone_weights=False)
    assert meta.metrics["check"]["images"] == 3 and meta.metrics["check"]["held_out"] is False
    state = {k: v.clone() for k, v in first.state_dict().items()}
    second, _ = train_detector(dataset, iterations=1, batch_size=2, seed=0, min_size=64, max_size=64,
                               backbone_weights=False, initial_state=state, learning_rate=0.0)
    # a zero learning rate leaves the starting detector's weights as they were
    for name, value in second.state_dict().items():
        assert torch.equal(value, state[name]), name
    with pytest.raises(BadInputError, match="starting detector does not fit"):
        train_detector(dataset, iterations=1, min_size=64, max_size=64, backbone_weights=False,
                       initial_state={"x": torch.zeros(1)})


def test_background_is_drawn_only_from_images_without_boxes() -> None:
    def sampler(labels):  # keeps every positive and every background entry
        return [(m >= 1).to(torch.uint8) for m in labels], [(m == 0).to(torch.uint8) for m in labels]

    boxed = torch.tensor([1, 0, 0, -1, 2])
    empty = torch.tensor([0, 0, -1])
    positives, negatives = BackgroundFromEmptyImages(sampler)([boxed, empty])
    assert positives[0].tolist() == [1, 0, 0, 0, 1] and positives[1].tolist() == [0, 0, 0]
    assert negatives[0].tolist() == [0, 0, 0, 0, 0] and negatives[1].tolist() == [1, 1, 0]


def test_incomplete_boxes_train_both_stages_without_background_from_boxed_images(tmp_path: Path, monkeypatch) -> None:
    squares = _squares(tmp_path, n=3)
    blank = Sample("blank", tmp_path / "blank.png", (), (), 64, 64)
    Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(blank.path)
    dataset = squares.with_samples((*squares.samples, blank))
    seen: list[tuple[bool, int]] = []  # (image has a positive entry, background entries drawn)
    wrapped = BackgroundFromEmptyImages.__call__

    def spy(self, labels):
        positives, negatives = wrapped(self, labels)
        seen.extend((bool((m >= 1).any()), int(n.sum())) for m, n in zip(labels, negatives))
        return positives, negatives

    monkeypatch.setattr(BackgroundFromEmptyImages, "__call__", spy)
    model, meta = train_detector(dataset, iterations=3, batch_size=2, negative_share=0.5, seed=0, min_size=64,
                                 max_size=64, backbone_weights=False, complete_boxes=False)
    assert meta.metrics["complete_boxes"] is False
    # 3 iterations x 2 stages x 2 images: the boxed image of each batch drew no background, the blank one did
    assert len(seen) == 12
    assert all(count == 0 for boxed, count in seen if boxed)
    assert all(count > 0 for boxed, count in seen if not boxed) and sum(not b for b, _ in seen) == 6
    assert not isinstance(model.rpn.fg_bg_sampler, BackgroundFromEmptyImages)
    assert not isinstance(model.roi_heads.fg_bg_sampler, BackgroundFromEmptyImages)
    seen.clear()
    train_detector(dataset, iterations=1, batch_size=2, seed=0, min_size=64, max_size=64, backbone_weights=False)
    assert seen == []
    with pytest.raises(BadAnnotationError, match="no image to learn background from"):
        train_detector(squares, iterations=1, min_size=64, max_size=64, backbone_weights=False, complete_boxes=False)
