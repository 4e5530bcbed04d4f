"""Weakly supervised detection: the proposal grid, the WSDDN/OICR head on toy bags, and `mil_boxes` end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.mil import (
    MilRecipe,
    MilTraining,
    instance_targets,
    mil_boxes,
    score_proposals,
    train_mil_head,
)
from iconolens.detect.proposals import ProposalGrid, grid_proposals
from iconolens.errors import BadInputError
from iconolens.models.backbones import backbone_spec


# --- proposals ---------------------------------------------------------------------------------------------


def _box(cx: float, cy: float, w: float, h: float) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.mark.parametrize("size", [(400, 300), (300, 500), (57, 41)])
def test_proposals_lie_inside_the_image_and_are_distinct(size):
    width, height = size
    boxes = grid_proposals(width, height)
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    assert 0 < len(boxes) <= ProposalGrid().max_proposals
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(torch.unique(boxes, dim=0)) == len(boxes)
    assert torch.equal(boxes, grid_proposals(width, height))  # deterministic
    assert [0, 0, width, height] in boxes.tolist()  # the whole painting is always a candidate


def test_a_fine_grid_finds_every_box_of_its_own_shapes_wherever_it_stands(rng):
    """With a stride of 1/6 of the box, a box of a grid shape is at most 1/12 of its side from a grid box along
    each axis, so some grid box overlaps it by (11/12)^2 of its area: IoU >= 0.84 / 1.16 > 0.7."""
    width, height = 400, 300
    grid = ProposalGrid(scales=(0.15, 0.3, 0.6), aspect_ratios=(0.5, 1.0, 3.0), stride=1 / 6, max_proposals=100_000)
    proposals = grid_proposals(width, height, grid)
    reference = math.sqrt(width * height)
    targets = []
    for scale in grid.scales:
        for ratio in grid.aspect_ratios:
            w, h = scale * reference / math.sqrt(ratio), scale * reference * math.sqrt(ratio)
            if w > width or h > height:
                continue
            for _ in range(20):
                x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
                targets.append([x0, y0, x0 + w, y0 + h])
    best = box_iou(torch.tensor(targets), proposals).max(dim=1).values
    assert best.min() >= 0.7


def test_the_default_grid_comes_close_to_figures_of_any_shape(rng):
    """Hand-picked figure shapes (standing, seated, reclining, a head, a group) at random places."""
    width, height = 500, 360
    shapes = [(60, 180), (90, 110), (200, 80), (40, 40), (260, 170), (120, 300), (330, 330)]
    targets = []
    for w, h in shapes:
        for _ in range(30):
            cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
            targets.append(_box(cx, cy, w, h))
    best = box_iou(torch.tensor(targets), grid_proposals(width, height)).max(dim=1).values
    assert best.min() >= 0.4
    assert (best >= 0.5).float().mean() >= 0.95
    assert best.median() >= 0.6


def test_the_cap_thins_the_grid_but_keeps_the_callers_boxes():
    extra = [[10.2, 20.0, 30.0, 40.4], [-5.0, 0.0, 50.0, 900.0]]
    boxes = grid_proposals(400, 300, ProposalGrid(max_proposals=60), extra=extra)
    assert len(boxes) <= 60
    assert boxes[:2].tolist() == [[10, 20, 30, 40], [0, 0, 50, 300]]
    full = grid_proposals(400, 300, ProposalGrid(max_proposals=100_000))
    assert len(full) > 60
    sides = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert sides.min() < 0.1 * 400 * 300  # thinning is spread over the scales, small boxes remain


@pytest.mark.parametrize("bad", [dict(scales=()), dict(aspect_ratios=(0.0,)), dict(stride=0.0),
                                 dict(max_proposals=0)])
def test_a_grid_that_cannot_exist_is_refused(bad):
    with pytest.raises(BadInputError):
        ProposalGrid(**bad)


def test_bad_extra_boxes_are_refused():
    with pytest.raises(BadInputError):
        grid_proposals(100, 100, extra=[[0, 0, float("nan"), 4]])
    with pytest.raises(BadInputError):
        grid_proposals(0, 100)


# --- the head on toy bags ----------------------------------------------------------------------------------

TOY_TRAINING = MilTraining(components=0, hidden=32, epochs=12, refinements=2, dropout=0.1, learning_rate=3e-3)


def toy_bags(count: int, seed: int, size: int = 20, dim: int = 16):
    """Bags of N(0, 1) vectors; every other bag (positive) holds one instance from N(mu, 0.5^2) at a random
    place. Returns features, labels (count, 1) and the planted index (-1 in negatives)."""
    generator = torch.Generator().manual_seed(seed)
    mu = torch.zeros(dim)
    mu[:4] = 3.0
    features, labels, planted = [], [], []
    for i in range(count):
        bag = torch.randn(size, dim, generator=generator)
        where = int(torch.randint(size, (1,), generator=generator))
        positive = i % 2 == 0
        if positive:
            bag[where] = mu + 0.5 * torch.randn(dim, generator=generator)
        features.append(bag)
        labels.append([1.0 if positive else 0.0])
        planted.append(where if positive else -1)
    return features, torch.tensor(labels), planted


@pytest.fixture(scope="module")
def toy_head():
    torch.set_num_threads(1)
    features, labels, _ = toy_bags(160, seed=0)
    return train_mil_head(features, labels, None, TOY_TRAINING, seed=0)


def test_the_head_finds_the_planted_instance_in_new_bags(toy_head):
    features, labels, planted = toy_bags(60, seed=1)
    found = {"wsddn": 0, "refined": 0, "stream 1": 0, "stream 2": 0}
    positive_scores, negative_scores = [], []
    for bag, where in zip(features, planted):
        scores = score_proposals(toy_head, bag)
        if where < 0:
            negative_scores.append(float(scores.image[0]))
            continue
        positive_scores.append(float(scores.image[0]))
        found["wsddn"] += int(scores.wsddn[:, 0].argmax()) == where
        found["refined"] += int(scores.refined[:, 0].argmax()) == where
        for k, stream in enumerate(scores.streams, start=1):
            found[f"stream {k}"] += int(stream[:, 1].argmax()) == where
    positives = len(positive_scores)
    for name, hits in found.items():
        assert hits >= 0.9 * positives, name
    assert np.mean(negative_scores) < 0.2
    assert np.mean(np.array(negative_scores) < 0.5) >= 0.9
    assert np.mean(np.array(positive_scores) > 0.5) >= 0.9


def test_one_class_uses_a_sigmoid_so_the_image_score_can_be_low(toy_head):
    """A softmax over a single class would be 1 for every proposal, so every image would score 1."""
    assert toy_head.single_class
    features, _, planted = toy_bags(4, seed=2)
    negative = score_proposals(toy_head, features[1])
    assert planted[1] == -1 and float(negative.image[0]) < 0.5
    assert float(negative.wsddn.sum()) == pytest.approx(float(negative.image[0]), abs=1e-5)


def test_the_same_seed_gives_the_same_scores_and_another_seed_does_not():
    torch.set_num_threads(1)
    features, labels, _ = toy_bags(24, seed=3)
    training = replace(TOY_TRAINING, epochs=2)
    first = score_proposals(train_mil_head(features, labels, None, training, seed=5), features[0])
    second = score_proposals(train_mil_head(features, labels, None, training, seed=5), features[0])
    other = score_proposals(train_mil_head(features, labels, None, training, seed=6), features[0])
    assert torch.equal(first.wsddn, second.wsddn) and torch.equal(first.refined, second.refined)
    assert not torch.equal(first.wsddn, other.wsddn)


def test_training_leaves_the_global_random_state_alone():
    features, labels, _ = toy_bags(8, seed=4)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_mil_head(features, labels, None, replace(TOY_TRAINING, epochs=1), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_seeds_several_instances_and_labels_their_neighbours():
    """Two people far apart both become seeds; a box around one of them shifted a little takes its class;
    a box around the whole first figure (the seed is its head) is left out; the rest is background."""
    boxes = torch.tensor([
        [10.0, 10, 30, 30],     # 0: head of figure A (best)
        [100.0, 10, 120, 30],   # 1: head of figure B
        [11.0, 11, 31, 31],     # 2: shifted head A, IoU > 0.5 with 0
        [5.0, 5, 35, 80],       # 3: whole figure A, encloses seed 0
        [200.0, 200, 240, 240],  # 4: background
        [101.0, 10, 121, 30],   # 5: shifted head B
    ])
    scores = torch.tensor([[0.9], [0.6], [0.85], [0.1], [0.05], [0.55]])
    labels, weights = instance_targets(scores, torch.tensor([True]), boxes, torch.tensor([0.8]), top_fraction=0.5,
                                       seed_nms=0.3, refine_iou=0.5, enclosing=0.8)
    assert labels.tolist() == [1, 1, 1, 0, 0, 1]
    assert weights[0] == pytest.approx(0.8) and weights[1] == pytest.approx(0.8 * 0.6 / 0.9)
    assert weights[3] == 0.0 and weights[4] > 0
    negatives, weights = instance_targets(scores, torch.tensor([False]), boxes, torch.tensor([0.1]))
    assert negatives.tolist() == [0] * 6 and weights.tolist() == [1.0] * 6


def test_bags_that_do_not_fit_their_labels_are_refused():
    with pytest.raises(BadInputError):
        train_mil_head([torch.zeros(3, 4)], torch.zeros(2, 1))
    with pytest.raises(BadInputError):
        train_mil_head([torch.zeros(3, 4)], torch.zeros(1, 1), [torch.zeros(2, 4)])


# --- end to end on tiny paintings --------------------------------------------------------------------------

needs_weights = pytest.mark.skipif(backbone_spec("mobilenet_v2").default_weights() is None,
                                   reason="MobileNetV2 ImageNet weights are not installed")

TINY_RECIPE = MilRecipe(
    grid=ProposalGrid(scales=(0.25, 0.5, 0.9), aspect_ratios=(1.0, 2.5), stride=0.5, max_proposals=60),
    min_size=64, max_size=96,
    training=MilTraining(components=16, hidden=16, epochs=3, refinements=2),
    max_boxes=3,
)


def tiny_collection(folder: Path, count: int = 10) -> Dataset:
    """Textured 72x56 paintings; the even ones hold a tall light 'figure', a few also a round 'halo' class."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        pixels = rng.integers(40, 120, size=(56, 72, 3), dtype=np.uint8)
        labels = []
        if i % 2 == 0:
            x = 8 + 5 * i
            pixels[10:50, x:x + 14] = (230, 220, 200)
            labels.append("figure")
            if i % 4 == 0:
                pixels[4:12, x + 2:x + 12] = (250, 200, 40)
                labels.append("halo")
        path = folder / f"painting{i}.png"
        Image.fromarray(pixels).save(path)
        samples.append(Sample(f"painting{i}", path, tuple(labels), width=72, height=56, split="train"))
    return Dataset(samples=tuple(samples), classes=("figure", "halo", "lamb"), multi_label=True, root=folder)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    dataset = tiny_collection(folder)
    derived = mil_boxes(dataset, recipe=TINY_RECIPE, seed=0, feature_dir=folder / "features")
    return dataset, derived, folder


@needs_weights
def test_boxes_only_for_the_labels_of_each_image_and_inside_it(tiny):
    dataset, derived, _ = tiny
    by_id = {s.id: s for s in dataset.samples}
    assert derived.method == "mil" and derived.recipe.level == "figure" and not derived.recipe.gate
    assert derived.boxes
    for box in derived.boxes:
        sample = by_id[box.sample_id]
        assert box.label in sample.labels
        assert 0 <= box.x0 < box.x1 <= 72 and 0 <= box.y0 < box.y1 <= 56
        assert 0 < box.probability < 1 and 0 <= box.mean_activation <= 1
    labelled = {s.id for s in dataset.samples if s.labels}
    assert set(derived.selected) == labelled
    for sid in labelled:
        for label in by_id[sid].labels:
            count = sum(1 for b in derived.boxes if b.sample_id == sid and b.label == label)
            assert 0 < count <= TINY_RECIPE.max_boxes
    assert derived.counts["images"] == 10 and derived.counts["negative_images"] == 5
    assert derived.counts["boxes"] == len(derived.boxes)


@needs_weights
def test_expert_boxes_are_never_consulted(tiny):
    """The same collection with deliberately wrong expert boxes gives exactly the same pseudo boxes."""
    dataset, derived, folder = tiny
    wrong = tuple(replace(s, boxes=(Box(0, 0, 3, 3, "figure"), Box(60, 40, 72, 56, "lamb"))) for s in dataset.samples)
    again = mil_boxes(dataset.with_samples(wrong), recipe=TINY_RECIPE, seed=0)
    assert again.boxes == derived.boxes and again.selected == derived.selected


@needs_weights
def test_cached_features_are_reused(tiny, monkeypatch):
    dataset, derived, folder = tiny
    import iconolens.detect.mil as mil

    def refuse(*args, **kwargs):
        raise AssertionError("the trunk ran although every image's features were cached")

    monkeypatch.setattr(mil, "RoIFeatureExtractor", refuse)
    again = mil_boxes(dataset, recipe=TINY_RECIPE, seed=0, feature_dir=folder / "features")
    assert again.boxes == derived.boxes


@needs_weights
def test_unreadable_images_are_counted_and_skipped(tmp_path):
    dataset = tiny_collection(tmp_path, count=6)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    samples = (*dataset.samples, Sample("broken", broken, ("figure",), split="train"))
    derived = mil_boxes(dataset.with_samples(samples), ["figure"], recipe=TINY_RECIPE)
    assert derived.counts["unreadable"] == 1 and derived.counts["images"] == 6
    assert all(b.sample_id != "broken" and b.label == "figure" for b in derived.boxes)


def test_unknown_classes_are_refused(tmp_path):
    dataset = tiny_collection(tmp_path, count=2)
    with pytest.raises(BadInputError, match="unicorn"):
        mil_boxes(dataset, ["unicorn"], recipe=TINY_RECIPE)


@needs_weights
def test_the_command_writes_boxes_and_scores(tmp_path, run_cli):
    from iconolens.data.dataset_json import save_dataset_json
    from iconolens.run import RunDirectory

    dataset = tiny_collection(tmp_path, count=8)
    truth = tuple(replace(s, boxes=(Box(8 + 5 * i, 10, 22 + 5 * i, 50, "figure"),) if "figure" in s.labels else ())
                  for i, s in enumerate(dataset.samples))
    run = RunDirectory(tmp_path / "run")
    save_dataset_json(dataset.with_samples(truth), run.dataset_json)
    code, out, err = run_cli("mil", "--run", str(run.root), "--split", "train", "--classes", "figure",
                             "--scales", "0.25,0.5,0.9", "--aspect-ratios", "1,2.5", "--max-proposals", "60",
                             "--min-size", "64", "--max-size", "96", "--components", "16", "--hidden", "16",
                             "--epochs", "2")
    assert code == 0, err
    detections = json.loads((run.boxes_dir / "mil_figure_detections.json").read_text())
    assert detections and all(d["category_id"] == 1 for d in detections)
    assert (run.boxes_dir / "mil_figure_pseudo_coco.json").is_file()
    record = json.loads((run.metrics_dir / "boxes_figure_mil.json").read_text())
    assert record["scores"]["method"] == "mil" and record["scores"]["truth_boxes"] == 4
    assert record["recipe"]["mil"]["grid"]["max_proposals"] == 60
    assert (run.root / "cache" / "mil_features").is_dir()
    assert "GT-known Loc" in out and len(out.strip().splitlines()) == 1
    code, _, err = run_cli("mil", "--run", str(run.root), "--scales", "big")
    assert code == 2 and "--scales" in err
