from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.evaluation import ScoredBox
from iconolens.detect.failures import failure_report


def test_report_explains_false_positives_and_missed_objects(region_detector, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8)).save(path)
    truth = (Box(8, 8, 24, 24, "thing"), Box(0, 24, 8, 32, "thing"))
    dataset = Dataset((Sample("a", path, ("thing",), truth, 32, 32),), ("thing",))
    predictions = [[ScoredBox(8, 8, 24, 24, "thing", 0.9), ScoredBox(20, 0, 32, 8, "thing", 0.8),
                    ScoredBox(0, 0, 4, 4, "thing", 0.1)]]
    failures = failure_report(region_detector, dataset, predictions, tmp_path / "report", min_score=0.5,
                              min_size=32, max_size=32, n_masks=20, batch_size=10, tolerance=None)
    assert [(f.kind, f.box) for f in failures] == [("false positive", (20.0, 0.0, 32.0, 8.0)),
                                                   ("missed", (0.0, 24.0, 8.0, 32.0))]
    saved = json.loads((tmp_path / "report" / "failures.json").read_text())
    assert [item["kind"] for item in saved] == ["false positive", "missed"]
    for item in saved:
        assert (tmp_path / "report" / item["overlay"]).is_file()
    assert "missed" in (tmp_path / "report" / "failures.html").read_text()


def test_the_report_keeps_raw_maps_and_opens_in_the_viewer(region_detector, tmp_path: Path) -> None:
    """Each item's raw D-RISE map is saved beside the report, so the viewer can threshold it."""
    from iconolens.viewer.build import build_viewer

    path = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8)).save(path)
    truth = (Box(8, 8, 24, 24, "thing"), Box(0, 24, 8, 32, "thing"))
    dataset = Dataset((Sample("a", path, ("thing",), truth, 32, 32),), ("thing",))
    predictions = [[ScoredBox(8, 8, 24, 24, "thing", 0.9), ScoredBox(20, 0, 32, 8, "thing", 0.8)]]
    report = tmp_path / "report"
    failures = failure_report(region_detector, dataset, predictions, report, min_score=0.5, min_size=32,
                              max_size=32, n_masks=20, batch_size=10, tolerance=None)
    maps = np.load(report / failures[0].map_file)
    assert maps.shape == (2, 32, 32) and [f.map_index for f in failures] == [0, 1]
    images = json.loads((report / "images.json").read_text())["images"]
    assert images[0]["detections"] == [[8, 8, 24, 24, "thing", 0.9], [20, 0, 32, 8, "thing", 0.8]]
    site = build_viewer(report).parent
    text = next((site / "data" / "images").glob("*.js")).read_text()
    assert '"false positive: thing (0.80)"' in text and '"missed: thing"' in text
