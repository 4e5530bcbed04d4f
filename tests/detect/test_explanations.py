"""D-RISE explanations of image files, one folder per image, from the library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from iconolens.detect.explanations import DriseSettings, explain_images


def _white(path: Path) -> Path:
    Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8)).save(path)
    return path


def test_each_image_gets_its_maps_targets_and_the_average_map_over_all_targets(region_detector,
                                                                                tmp_path: Path) -> None:
    images = [_white(tmp_path / "a.png"), _white(tmp_path / "b.png")]
    seen = []
    records = explain_images(region_detector, images, tmp_path / "out", DriseSettings(n_masks=24, batch_size=8),
                             min_score=0.5, min_size=32, max_size=32, on_image=lambda p, s: seen.append(p.name))
    assert seen == ["a.png", "b.png"]
    for name, record in zip(("a", "b"), records):
        folder = tmp_path / "out" / name
        assert json.loads((folder / "explanation.json").read_text()) == record
        assert [t["box"] for t in record["targets"]] == [[8.0, 8.0, 24.0, 24.0]]  # the one detection on white
        assert np.load(folder / "maps.npy").shape == (1, 32, 32)
        assert (folder / record["targets"][0]["overlay"]).is_file()
        assert isinstance(record["targets"][0]["pointing_game"], bool)
    assert json.loads((tmp_path / "out" / "average_saliency.json").read_text())["targets"] == 2


def test_given_boxes_are_explained_instead_of_the_detections_and_have_no_score(region_detector,
                                                                               tmp_path: Path) -> None:
    image = _white(tmp_path / "a.png")
    records = explain_images(region_detector, [image], tmp_path / "out", DriseSettings(n_masks=8, batch_size=8),
                             given=[([0, 0, 10, 10], "thing")], min_size=32, max_size=32)
    assert [(t["box"], t["label"], t["score"]) for t in records[0]["targets"]] == [([0.0, 0.0, 10.0, 10.0], "thing",
                                                                                    None)]
    assert not (tmp_path / "out" / "average_saliency.json").exists()  # one target: nothing to average
