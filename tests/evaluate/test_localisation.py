"""Localisation metrics on hand-made maps, against values worked out by hand or by a slow direct loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from iconolens.data.records import Box, Dataset, Sample
from iconolens.evaluate.localisation import (
    ALL_CLASSES,
    THRESHOLDS,
    evaluate_localisation,
    localisation_curves,
    normalised_maps,
    require_measured,
)
from iconolens.errors import BadInputError
from iconolens.explain.store import MapStore

POSITIVE = THRESHOLDS > 0


def test_thresholds_are_the_papers_sweep():
    assert len(THRESHOLDS) == 21
    assert THRESHOLDS[0] == 0.0 and THRESHOLDS[-1] == 1.0
    np.testing.assert_allclose(np.diff(THRESHOLDS), 0.05)


def test_map_equal_to_box_indicator_is_perfect():
    saliency = np.zeros((30, 40))
    saliency[5:15, 10:30] = 1.0
    r = localisation_curves(saliency, [(10, 5, 30, 15)])
    np.testing.assert_allclose(r.global_iou[POSITIVE], 1.0)
    np.testing.assert_allclose(r.component_iou[0, POSITIVE], 1.0)
    assert r.covered[0].all()
    np.testing.assert_allclose(r.irrelevant_attention[POSITIVE], 0.0)
    # At t = 0 every pixel is foreground: IoU is the box's share of the image.
    assert r.global_iou[0] == pytest.approx(200 / 1200)
    assert r.irrelevant_attention[0] == pytest.approx(1000 / 1200)


def test_map_disjoint_from_boxes_scores_nothing():
    saliency = np.zeros((30, 40))
    saliency[20:28, 0:8] = 1.0
    r = localisation_curves(saliency, [(10, 5, 30, 15), (30, 0, 40, 10)])
    np.testing.assert_allclose(r.global_iou[POSITIVE], 0.0)
    np.testing.assert_allclose(r.component_iou[:, POSITIVE], 0.0)
    assert not r.covered[:, POSITIVE].any()
    np.testing.assert_allclose(r.irrelevant_attention[POSITIVE], 1.0)


def test_two_components_over_two_boxes_by_hand():
    saliency = np.zeros((20, 20))
    saliency[3:8, 3:8] = 0.8  # 25 px; overlaps box A in rows/cols 3..5 = 9 px
    saliency[10:14, 10:12] = 0.6  # 8 px, inside box B
    boxes = [(2, 2, 6, 6), (10, 10, 14, 14)]  # 16 px each
    r = localisation_curves(saliency, boxes, thresholds=[0.5, 0.7, 0.9])
    np.testing.assert_allclose(r.component_iou[:, 0], [9 / 32, 8 / 16])
    np.testing.assert_allclose(r.mean_component_iou[0], (9 / 32 + 0.5) / 2)
    assert r.global_iou[0] == pytest.approx(17 / 48)
    assert r.irrelevant_attention[0] == pytest.approx(16 / 33)
    assert r.covered[:, 0].tolist() == [True, True]  # 9/16 and 8/16 are both >= 20%
    # At 0.7 only the first component survives.
    np.testing.assert_allclose(r.component_iou[:, 1], [9 / 32, 0.0])
    assert r.global_iou[1] == pytest.approx(9 / (32 + 25 - 9))
    # At 0.9 nothing is left: IoU 0, irrelevant attention undefined.
    assert r.global_iou[2] == 0 and np.isnan(r.irrelevant_attention[2])


def test_component_reaching_outside_counts_whole():
    # A diagonal chain (8-connected) touches the box with one pixel and runs far outside.
    saliency = np.zeros((10, 10))
    for i in range(10):
        saliency[i, i] = 1.0
    r = localisation_curves(saliency, [(0, 0, 1, 1)], thresholds=[0.5])
    # Box 1 px, intersection 1 px, component 10 px: IoU = 1 / 10.
    assert r.component_iou[0, 0] == pytest.approx(0.1)


def test_coverage_needs_twenty_percent_of_the_box():
    saliency = np.zeros((10, 10))
    saliency[0, 0:2] = 1.0  # 2 px of a 10-px box: exactly 20%
    saliency[5, 0:1] = 1.0  # 1 px of another 10-px box: 10%
    r = localisation_curves(saliency, [(0, 0, 10, 1), (0, 5, 10, 6)], thresholds=[0.5])
    assert r.covered[:, 0].tolist() == [True, False]


def test_shifting_the_map_off_the_box_lowers_iou():
    yy, xx = np.mgrid[0:64, 0:64]
    box = (20, 20, 40, 40)
    ious = []
    for shift in (0, 8, 16, 24):
        blob = np.exp(-(((xx - 30 - shift) ** 2 + (yy - 30) ** 2) / (2 * 8.0**2)))
        blob = (blob - blob.min()) / (blob.max() - blob.min())
        r = localisation_curves(blob, [box], thresholds=[0.3])
        ious.append((r.global_iou[0], r.component_iou[0, 0]))
    global_ious, component_ious = zip(*ious)
    assert all(a > b for a, b in zip(global_ious, global_ious[1:]))
    assert all(a > b for a, b in zip(component_ious, component_ious[1:]))


def _slow_metrics(saliency: np.ndarray, boxes, t: float):
    """One threshold, pixel masks and scipy's labelling: the definitions written out directly."""
    fg = saliency >= t
    masks = []
    for x0, y0, x1, y1 in boxes:
        m = np.zeros_like(fg)
        m[y0:y1, x0:x1] = True
        masks.append(m)
    union = np.logical_or.reduce(masks)
    labels, _ = ndimage.label(fg, structure=np.ones((3, 3)))
    comp = []
    for m in masks:
        touched = np.isin(labels, np.unique(labels[m & fg]))
        touched &= fg
        comp.append((m & touched).sum() / (m | touched).sum())
    g = (union & fg).sum() / (union | fg).sum()
    irr = (fg & ~union).sum() / fg.sum() if fg.any() else np.nan
    cov = [(m & fg).sum() >= 0.2 * m.sum() for m in masks]
    return np.array(comp), g, irr, np.array(cov)


def test_vectorised_sweep_equals_slow_loop(rng):
    for _ in range(3):
        noise = ndimage.gaussian_filter(rng.random((48, 56)), 3)
        saliency = normalised_maps(noise[None], (48, 56))[0]
        boxes = []
        for _ in range(3):
            x0, y0 = rng.integers(0, 40), rng.integers(0, 30)
            boxes.append((int(x0), int(y0), int(x0 + rng.integers(3, 16)), int(y0 + rng.integers(3, 16))))
        r = localisation_curves(saliency, boxes)
        for k, t in enumerate(THRESHOLDS):
            comp, g, irr, cov = _slow_metrics(saliency.astype(np.float64), boxes, t)
            np.testing.assert_allclose(r.component_iou[:, k], comp, err_msg=f"t={t}")
            assert r.global_iou[k] == pytest.approx(g)
            np.testing.assert_allclose(r.irrelevant_attention[k], irr)
            assert r.covered[:, k].tolist() == cov.tolist()


def test_constant_map_has_defined_results():
    saliency = normalised_maps(np.full((1, 4, 4), 3.0), (16, 16))[0]
    assert not saliency.any()  # a constant map normalises to zeros, never NaN
    r = localisation_curves(saliency, [(0, 0, 4, 4)])
    assert r.global_iou[0] == pytest.approx(16 / 256)  # t = 0 keeps everything
    np.testing.assert_allclose(r.global_iou[POSITIVE], 0.0)
    np.testing.assert_allclose(r.component_iou[:, POSITIVE], 0.0)
    assert np.isnan(r.irrelevant_attention[POSITIVE]).all()


def test_boxes_are_clipped_and_empty_boxes_refused():
    saliency = np.ones((10, 10))
    r = localisation_curves(saliency, [(-5, -5, 5, 5)], thresholds=[0.5])
    assert r.global_iou[0] == pytest.approx(25 / 100)
    with pytest.raises(ValueError, match="positive area"):
        localisation_curves(saliency, [(12, 12, 20, 20)])


def test_normalisation_is_bilinear_then_min_max():
    raw = np.array([[[0.0, 2.0], [2.0, 4.0]]], dtype=np.float32)
    out = normalised_maps(raw, (4, 4))[0]
    # align_corners=False: output pixel centres at input coords -0.25, 0.25, 0.75, 1.25 (clamped to 0..1).
    coords = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1)
    expected = (np.interp(coords, [0, 1], [0, 2])[None, :] + np.interp(coords, [0, 1], [0, 2])[:, None]) / 4
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.min() == 0 and out.max() == 1


# ---- whole-dataset evaluation -------------------------------------------------------------------------


def _sample(sid: str, labels, boxes, size=(20, 20)) -> Sample:
    return Sample(id=sid, path=Path(f"/nowhere/{sid}.png"), labels=tuple(labels), boxes=tuple(boxes),
                  width=size[1], height=size[0])


def test_dataset_evaluation_averages_per_label_then_over_labels(tmp_path):
    classes = ["Peter", "Paul"]
    store = MapStore(tmp_path / "maps" / "cam")
    store.initialise(classes, "cam", {})
    perfect = np.zeros((2, 20, 20), dtype=np.float32)
    perfect[0, 0:10, 0:10] = 1  # Peter's map exactly on his keys box
    a = _sample("a", ["Peter"], [Box(0, 0, 10, 10, "keys - Peter", "attribute")])
    # Image b: two boxes of the same symbol, map on one of them only; Paul has no box; an unknown class.
    b_maps = np.zeros((2, 20, 20), dtype=np.float32)
    b_maps[0, 0:10, 0:10] = 1
    b = _sample("b", ["Peter", "Paul", "Jerome"], [
        Box(0, 0, 10, 10, "keys - Peter", "attribute"),
        Box(10, 10, 20, 20, "keys - Peter", "attribute"),
        Box(10, 0, 20, 10, "book - Peter", "attribute"),
        Box(0, 10, 10, 20, "lion - Jerome", "attribute"),
    ])
    c = _sample("c", ["Paul"], [Box(0, 0, 5, 5, "sword - Paul", "attribute")])  # no maps stored
    store.write("a", perfect, np.array([0.9, 0.1]))
    store.write("b", b_maps, np.array([0.8, 0.2]))
    dataset = Dataset(samples=(a, b, c), classes=("Peter", "Paul", "Jerome"))
    report = evaluate_localisation(dataset, {"cam": store}, level="attribute")
    # keys - Peter: boxes with IoU 1, 1, 0 -> 2/3; book - Peter: 0. Peter = mean(2/3, 0) = 1/3.
    assert report.value("cam", "component_iou", 0.5, "Peter") == pytest.approx(1 / 3)
    assert report.value("cam", "component_iou", 0.5) == pytest.approx(1 / 3)
    assert report.value("cam", "box_coverage", 0.5) == pytest.approx((2 / 3 + 0) / 2)
    # Global IoU per map: a -> 1, b -> 100 / 300; Peter's mean is their mean.
    assert report.value("cam", "global_iou", 0.5, "Peter") == pytest.approx((1 + 1 / 3) / 2)
    assert report.counts["cam"] == {
        "maps": 2, "boxes": 4, "no_boxes": 1, "class_not_in_maps": 1, "missing_maps": 1,
    }
    assert "Paul" not in report.curves["cam"] and ALL_CLASSES in report.curves["cam"]
    rows = report.rows()
    assert len(rows) == 2 * 4 * 21  # (Peter, all) x 4 metrics x 21 thresholds
    data = report.to_json()
    assert data["peaks"]["cam"]["component_iou"]["value"] == pytest.approx(1 / 3, abs=1e-6)


def test_irrelevant_attention_average_skips_empty_foregrounds(tmp_path):
    store = MapStore(tmp_path / "m")
    store.initialise(["P"], "cam", {})
    half = np.zeros((1, 10, 10), dtype=np.float32)
    half[0, :, :5] = 1  # half inside the box (left half), so irrelevant attention 0
    store.write("x", half, np.array([1.0]))
    store.write("y", np.zeros((1, 10, 10), dtype=np.float32), np.array([1.0]))  # constant: empty above 0
    boxes = [Box(0, 0, 5, 10, "P")]
    ds = Dataset(samples=(_sample("x", ["P"], boxes, (10, 10)), _sample("y", ["P"], boxes, (10, 10))),
                 classes=("P",))
    report = evaluate_localisation(ds, {"cam": store})
    assert report.value("cam", "irrelevant_attention", 0.5) == pytest.approx(0.0)  # y left out, not 0 or 1
    assert report.value("cam", "global_iou", 0.5) == pytest.approx(0.5)  # y counts as IoU 0


def test_smaller_measuring_grid_gives_the_same_answer_on_aligned_boxes(tmp_path):
    # 40x40 raw maps of blocks on even pixel borders: halving the grid averages 2x2 pixels exactly, and the
    # boxes scale to whole pixels, so every metric at every threshold is unchanged.
    store = MapStore(tmp_path / "m")
    store.initialise(["P"], "cam", {})
    rng = np.random.default_rng(3)
    samples = []
    for i in range(3):
        maps = np.zeros((1, 40, 40), dtype=np.float32)
        for _ in range(3):
            x, y = rng.integers(0, 16, size=2) * 2
            maps[0, y:y + 8, x:x + 12] += rng.random(dtype=np.float32)
        store.write(f"s{i}", maps, np.array([1.0]))
        x0, y0 = (int(v) * 2 for v in rng.integers(0, 12, size=2))
        samples.append(_sample(f"s{i}", ["P"], [Box(x0, y0, x0 + 14, y0 + 10, "P")], (40, 40)))
    ds = Dataset(samples=tuple(samples), classes=("P",))
    full = evaluate_localisation(ds, {"cam": store}, max_side=None)
    half = evaluate_localisation(ds, {"cam": store}, max_side=20)
    for metric in ("component_iou", "global_iou", "box_coverage", "irrelevant_attention"):
        np.testing.assert_allclose(half.curves["cam"][ALL_CLASSES][metric], full.curves["cam"][ALL_CLASSES][metric],
                                   atol=1e-9, err_msg=metric)


@pytest.mark.parametrize("boxes, level, stored, fragment", [
    ([Box(0, 0, 10, 10, "dog")], "figure", True,
     "the figure boxes of the images with maps are of dog, and the maps are of Peter, Paul only"),
    ([Box(0, 0, 10, 10, "Peter")], "attribute", True,
     "none of the 2 images with maps has attribute boxes; they have figure boxes, so try --level figure"),
    ([], "figure", True, "none of the 2 images with maps has figure boxes"),
    ([Box(0, 0, 10, 10, "Peter")], "figure", False, "none of the 2 images has stored maps of cam"),
    ([Box(3, 3, 3, 9, "Peter")], "figure", True, "the figure boxes of Peter on the images with maps have no area on the measuring grid"),
])
def test_a_report_without_one_measured_map_is_refused_saying_why(tmp_path, boxes, level, stored, fragment):
    store = MapStore(tmp_path / "maps" / "cam")
    store.initialise(["Peter", "Paul"], "cam", {})
    samples = tuple(_sample(sid, ["Peter"], boxes) for sid in ("a", "b"))
    if stored:
        for sample in samples:
            store.write(sample.id, np.ones((2, 20, 20), dtype=np.float32), np.array([0.5, 0.5]))
    dataset = Dataset(samples=samples, classes=("Peter",))
    report = evaluate_localisation(dataset, {"cam": store}, level=level)
    with pytest.raises(BadInputError) as info:
        require_measured(report, dataset, {"cam": store}, tmp_path / "dataset.json")
    assert str(info.value) == f"{tmp_path / 'dataset.json'}: no map could be measured: {fragment}"


def test_a_report_with_a_measured_map_passes(tmp_path):
    store = MapStore(tmp_path / "maps" / "cam")
    store.initialise(["Peter"], "cam", {})
    store.write("a", np.ones((1, 20, 20), dtype=np.float32), np.array([0.5]))
    dataset = Dataset(samples=(_sample("a", ["Peter"], [Box(0, 0, 10, 10, "Peter")]),), classes=("Peter",))
    report = evaluate_localisation(dataset, {"cam": store})
    require_measured(report, dataset, {"cam": store})
