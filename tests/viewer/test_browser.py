"""The viewer in a real browser (chromium via Playwright), opened from file:// as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.evaluate.boxes import boxes_from_map
from iconolens.explain.store import MapStore
from iconolens.viewer.build import build_viewer
from iconolens.viewer.maps import quantise_maps, viewer_saliency

from .conftest import CLASSES, make_run
from .test_site import _index


def _open(page, site: Path, fragment: str = "") -> None:
    page.goto(f"file://{site / 'index.html'}{fragment}")
    page.wait_for_function("document.getElementById('match-count').textContent.includes('match')"
                           " || !document.getElementById('image-view').hidden")


def _cards(page) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.id)")


def _wait_for_overlay(page, method: str, target: str, threshold: float, level: str) -> None:
    ready = f"{method}|{target}|{threshold:g}|{level}"
    page.wait_for_function(f"document.getElementById('overlay').dataset.ready === {json.dumps(ready)}")


def _set_threshold(page, value: float) -> None:
    page.eval_on_selector("#threshold", f"(el) => {{ el.value = '{value:g}'; el.dispatchEvent(new Event('input')); }}")


def _overlay_alpha(page) -> np.ndarray:
    data = page.evaluate("""() => { const c = document.getElementById('overlay');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""")
    width, height, rgba = data
    return np.array(rgba, dtype=np.uint8).reshape(height, width, 4)


def _derived(page) -> list[tuple[int, ...]]:
    grids = page.eval_on_selector_all("#boxes rect.derived", "rs => rs.map(r => r.dataset.grid)")
    return sorted(tuple(int(v) for v in g.split()) for g in grids)


def test_the_gallery_filters_by_split_true_class_and_outcome(tmp_path: Path, page) -> None:
    run = make_run(tmp_path / "run", n_images=9, thresholds=(0.3, 0.6, 0.9))
    site = build_viewer(run.root).parent
    entries = _index(site)
    _open(page, site)
    assert _cards(page) == [e["id"] for e in entries]
    page.select_option("#filter-split", "test")
    page.wait_for_function("location.hash.includes('split=test')")
    assert _cards(page) == [e["id"] for e in entries if e["s"] == "test"]
    page.select_option("#filter-truth", "Paul")
    page.wait_for_function("location.hash.includes('truth=Paul')")
    assert _cards(page) == [e["id"] for e in entries if e["s"] == "test" and "Paul" in e["l"]]
    page.select_option("#filter-split", "")
    page.select_option("#filter-truth", "")
    page.select_option("#filter-outcome", "missed")
    page.wait_for_function("location.hash.includes('outcome=missed')")
    missed = [s.id for s in run.dataset.samples if s.id != run.unreadable and any(
        run.scores[s.id][CLASSES.index(c)] < t for c, t in zip(CLASSES, (0.3, 0.6, 0.9)) if c in s.labels)]
    assert _cards(page) == missed and missed
    assert page.errors == []


def test_sorting_by_a_measure_worst_first_orders_the_cards_by_it(tmp_path: Path, page) -> None:
    run = make_run(tmp_path / "run", n_images=8, unreadable=False)
    site = build_viewer(run.root).parent
    entries = _index(site)
    key = "cam:figure:global_iou"
    _open(page, site, f"#gallery?sort=m:{key}&order=worst")
    page.wait_for_selector(".card")
    expected = [e["id"] for e in sorted(entries, key=lambda e: (e["m"][key], entries.index(e)))]
    assert _cards(page) == expected


def test_choosing_a_method_or_a_class_changes_the_overlay_to_that_maps_foreground(tmp_path: Path, page) -> None:
    run = make_run(tmp_path / "run", n_images=2, unreadable=False)
    site = build_viewer(run.root).parent
    entry = _index(site)[0]
    sample_id = entry["id"]
    _open(page, site, f"#image/{entry['k']}")
    seen = []
    for method, target in (("cam", "Peter"), ("gradcam", "Peter"), ("gradcam", "Jerome")):
        page.select_option("#method", method)
        page.select_option("#target", target)
        _set_threshold(page, 0.4)
        _wait_for_overlay(page, method, target, 0.4, "attribute")
        alpha = _overlay_alpha(page)
        q = quantise_maps(run.raw[method][sample_id])[CLASSES.index(target)]
        expected = viewer_saliency(q, (entry["gw"], entry["gh"])) >= 0.4
        np.testing.assert_array_equal(alpha[..., 3] > 0, expected)
        seen.append(alpha.tobytes())
    assert len(set(seen)) == 3
    assert page.errors == []


THRESHOLDS = (0.0, 0.1, 0.25, 0.5, 0.63, 0.8, 0.97, 1.0)


def _slider_boxes_match_python(page, entry: dict, raw: np.ndarray, target: str) -> list[tuple[str, float, int]]:
    """Set each threshold and level; check the drawn boxes; return (level, threshold, number of boxes)."""
    q = quantise_maps(raw)[CLASSES.index(target)]
    saliency = viewer_saliency(q, (entry["gw"], entry["gh"]))
    seen = []
    for level in ("attribute", "figure"):
        page.select_option("#derive-level", level)
        for threshold in THRESHOLDS:
            _set_threshold(page, threshold)
            _wait_for_overlay(page, "cam", target, threshold, level)
            expected = sorted((b.x0, b.y0, b.x1, b.y1) for b in boxes_from_map(saliency, level, threshold))
            assert _derived(page) == expected, (level, threshold)
            seen.append((level, threshold, len(expected)))
    return seen


@pytest.mark.parametrize(("size", "map_size"), [((64, 48), (5, 4)), ((1200, 900), (9, 7))])
def test_the_threshold_slider_draws_exactly_the_python_boxes_at_that_threshold(tmp_path: Path, page, size,
                                                                                 map_size) -> None:
    run = make_run(tmp_path / "run", n_images=1, unreadable=False, size=size, map_size=map_size, seed=4)
    site = build_viewer(run.root).parent
    entry = _index(site)[0]
    _open(page, site, f"#image/{entry['k']}")
    page.select_option("#method", "cam")
    page.select_option("#target", "Peter")
    seen = _slider_boxes_match_python(page, entry, run.raw["cam"][entry["id"]], "Peter")
    assert max(n for level, _, n in seen if level == "attribute") >= 2  # several components at some threshold
    # Boxes are drawn in the image's pixels: the grid boxes scaled by image size / grid size.
    _set_threshold(page, 0.5)
    _wait_for_overlay(page, "cam", "Peter", 0.5, "figure")
    x = float(page.get_attribute("#boxes rect.derived", "x"))
    assert x == pytest.approx(_derived(page)[0][0] * size[0] / entry["gw"])


def test_weak_components_are_dropped_in_the_browser_as_in_python(tmp_path: Path, page) -> None:
    """A strong blob and a faint one: at low thresholds the faint component is below half the mean."""
    import cv2

    run = make_run(tmp_path / "run", n_images=1, unreadable=False, size=(96, 96), map_size=(12, 12))
    sample_id = run.dataset.samples[0].id
    raw = np.zeros((3, 12, 12), dtype=np.float32)
    raw[0, 2:5, 2:5] = 1.0
    raw[0, 8:10, 8:10] = 0.3
    MapStore(run.root / "maps" / "cam").write(sample_id, raw, run.scores[sample_id])
    site = build_viewer(run.root).parent
    entry = _index(site)[0]
    _open(page, site, f"#image/{entry['k']}")
    page.select_option("#method", "cam")
    page.select_option("#target", "Peter")
    seen = _slider_boxes_match_python(page, entry, raw, "Peter")
    saliency = viewer_saliency(quantise_maps(raw)[0], (96, 96))
    dropped = [t for level, t, n in seen if level == "attribute" and 0 < t <= saliency.max() and
               cv2.connectedComponents((saliency >= t).astype(np.uint8), connectivity=8)[0] - 1 > n]
    assert dropped  # the rule was exercised, not only the plain components


def test_a_thousand_image_run_loads_pages_and_opens_without_console_errors(tmp_path: Path, page) -> None:
    run = make_run(tmp_path / "run", n_images=1000, size=(24, 16), map_size=(3, 2), methods=("cam",),
                   unreadable=False)
    site = build_viewer(run.root).parent
    _open(page, site)
    assert page.text_content("#match-count") == "1000 of 1000 images match"
    assert len(_cards(page)) == 100
    assert "page 1 of 10" in page.text_content("#pager")
    page.click("#pager a:has-text('next')")
    page.wait_for_function("document.getElementById('pager').textContent.includes('page 2 of 10')")
    assert _cards(page)[0] == "p0100"
    page.click(".card >> nth=0")
    page.wait_for_selector("#overlay[data-ready]")
    assert page.errors == []


def _failure_report(folder: Path) -> None:
    """A failure report as ``iconolens detect eval --failures`` writes it: one image, a false positive and a
    missed object with their raw D-RISE maps."""
    (folder / "maps").mkdir(parents=True)
    image = folder / "scene.png"
    Image.fromarray(np.full((40, 60, 3), 200, dtype=np.uint8)).save(image)
    maps = np.zeros((2, 40, 60), dtype=np.float16)
    maps[0, 0:10, 40:60] = 1.0
    maps[1, 20:40, 0:15] = 1.0
    np.save(folder / "maps" / "scene.npy", maps)
    (folder / "images.json").write_text(json.dumps({"classes": ["person"], "min_score": 0.5, "images": [{
        "id": "scene", "file": str(image), "width": 60, "height": 40, "split": None, "labels": ["person"],
        "detections": [[5, 5, 30, 35, "person", 0.9], [40, 0, 60, 10, "person", 0.8]],
        "truth": [[5, 5, 30, 35, "person"], [0, 20, 15, 40, "person"]]}]}))
    (folder / "failures.json").write_text(json.dumps([
        {"sample_id": "scene", "kind": "false positive", "label": "person", "box": [40, 0, 60, 10], "score": 0.8,
         "overlay": "maps/a.png", "masks_used": 10, "note": "", "map_file": "maps/scene.npy", "map_index": 0},
        {"sample_id": "scene", "kind": "missed", "label": "person", "box": [0, 20, 15, 40], "score": None,
         "overlay": "maps/b.png", "masks_used": 10, "note": "", "map_file": "maps/scene.npy", "map_index": 1}]))


def test_a_detector_failure_report_opens_with_detections_missed_objects_and_their_maps(tmp_path: Path,
                                                                                       page) -> None:
    _failure_report(tmp_path / "failures")
    site = build_viewer(tmp_path / "failures").parent
    entry = _index(site)[0]
    assert entry["o"] == ["missed", "wrong"]
    _open(page, site, f"#image/{entry['k']}")
    page.wait_for_selector("#overlay[data-ready]")
    options = page.eval_on_selector_all("#target option", "os => os.map(o => o.value)")
    assert options == ["false positive: person (0.80)", "missed: person"]
    page.select_option("#target", "missed: person")
    page.select_option("#derive-level", "figure")
    _set_threshold(page, 0.5)
    _wait_for_overlay(page, "drise", "missed: person", 0.5, "figure")
    assert page.eval_on_selector_all("#boxes rect.stored", "rs => rs.length") == 2  # the detections
    assert page.eval_on_selector_all("#boxes rect.expert", "rs => rs.length") == 2
    explained = page.eval_on_selector("#boxes rect.explained", "r => [r.x.baseVal.value, r.y.baseVal.value]")
    assert explained == [0, 20]
    # The missed person's map is hot exactly on its box: the derived box is that box.
    assert _derived(page) == [(0, 20, 15, 40)]
    assert page.errors == []
