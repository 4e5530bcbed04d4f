"""Test-time flip: boxes from the mirror image come back to the right place and merge with the direct ones."""

from __future__ import annotations

import torch

from iconolens.detect.detections import Detections
from iconolens.detect.mirrored import MirroredViews, merged, mirrored


def _detections(boxes, scores, labels, classes: int = 3) -> Detections:
    labels = torch.tensor(labels)
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                      torch.nn.functional.one_hot(labels, classes).float(), None, labels)


class LeftHalfDetector:
    """Finds the bright square of an image (class 1, score = its brightness) only when it lies in the left half:
    a detector that sees an image and its mirror image differently."""

    classes = ("__background__", "saint", "dog")

    def __call__(self, images):
        found = []
        for image in images:
            ys, xs = torch.nonzero(image[0] > 0.1, as_tuple=True)
            if len(xs) and float(xs.float().mean()) < image.shape[-1] / 2:
                box = [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]
                found.append(_detections([box], [float(image[0].max())], [1]))
            else:
                found.append(Detections.empty(3))
        return found


def test_a_box_of_the_mirror_image_is_mirrored_back_by_hand() -> None:
    back = mirrored(_detections([[10, 5, 30, 20]], [0.5], [1]), width=100)
    assert back.boxes.tolist() == [[70.0, 5.0, 90.0, 20.0]]
    assert back.scores.tolist() == [0.5] and back.labels.tolist() == [1]


def test_merging_keeps_the_better_of_two_boxes_that_agree_and_everything_else() -> None:
    first = _detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.4], [1, 1])
    second = _detections([[1, 0, 11, 10], [0, 0, 10, 10], [80, 80, 90, 90]], [0.6, 0.7, 0.3], [1, 2, 1])
    both = merged(first, second)
    # [1,0,11,10] overlaps [0,0,10,10] of the same class at IoU 90/110 > 0.5 and scores lower: suppressed; the
    # same box of another class stays
    kept = sorted((round(score, 6), label) for score, label in zip(both.scores.tolist(), both.labels.tolist()))
    assert kept == [(0.3, 1), (0.4, 1), (0.7, 2), (0.9, 1)]
    assert both.class_probs.shape == (4, 3)
    assert merged(Detections.empty(3), Detections.empty(3)).boxes.shape == (0, 4)


def test_mirrored_views_find_what_only_the_mirror_image_shows_where_it_is() -> None:
    images = torch.zeros(2, 3, 20, 40)
    images[0, :, 4:10, 30:36] = 0.8  # right half: the plain view misses it, the mirror image shows it on the left
    images[1, :, 2:6, 3:9] = 0.5  # left half: the plain view finds it, the mirror image does not
    plain = LeftHalfDetector()(images)
    assert len(plain[0]) == 0
    views = MirroredViews(LeftHalfDetector())(images)
    assert views[0].boxes.tolist() == [[30.0, 4.0, 36.0, 10.0]]
    assert views[1].boxes.tolist() == [[3.0, 2.0, 9.0, 6.0]]
    assert [round(float(v.scores[0]), 6) for v in views] == [0.8, 0.5]
    assert MirroredViews(LeftHalfDetector()).classes == LeftHalfDetector.classes


def test_both_ways_in_one_pass_equal_each_view_run_on_its_own(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from iconolens.data.records import Sample
    from iconolens.detect.evaluation import detect_samples
    from iconolens.detect.mirrored import detect_both_ways

    samples = []
    for i, x in enumerate((4, 28)):  # a square on the left, then one on the right
        pixels = np.zeros((20, 40, 3), dtype=np.uint8)
        pixels[5:11, x:x + 6] = 200
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        samples.append(Sample(str(i), tmp_path / f"{i}.png", (), (), 40, 20))
    samples.append(Sample("missing", tmp_path / "missing.png", (), (), 40, 20))
    alone, both = detect_both_ways(LeftHalfDetector(), samples, 20, 40, workers=0)
    assert alone == detect_samples(LeftHalfDetector(), samples, 20, 40)
    assert both == detect_samples(MirroredViews(LeftHalfDetector()), samples, 20, 40)
    assert [len(b) for b in alone[:2]] == [1, 0] and [len(b) for b in both[:2]] == [1, 1] and both[2] is None
