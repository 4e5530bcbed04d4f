"""The grid search ranks settings by how well their maps localise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iconolens.data.records import Box, Sample
from iconolens.evaluate.grid_search import grid_search_maps


def test_grid_search_finds_the_setting_that_fits_the_boxes():
    # Maps are Gaussian blobs displaced from each box's centre by "shift" pixels: the further the blob
    # drifts off the 8x8 box, the lower the best component IoU any threshold can give.
    samples = [
        Sample("a", Path("/x/a.png"), ("P",), (Box(4, 4, 12, 12, "sym - P", "attribute"),), width=32, height=32),
        Sample("b", Path("/x/b.png"), ("P",), (Box(18, 20, 26, 28, "sym - P", "attribute"),), width=32,
               height=32),
    ]
    yy, xx = np.mgrid[0:32, 0:32] + 0.5

    def explain(params):
        maps = []
        for s in samples:
            b = s.boxes[0]
            cx, cy = (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2
            cx += params["shift"]
            maps.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 3.0**2))[None])
        return np.stack(maps)

    grid = [{"shift": s} for s in (3, 0, 6)]
    result = grid_search_maps(explain, grid, samples, ["P"], level="attribute")
    assert result.best.params == {"shift": 0}
    assert result.worst.params == {"shift": 6}
    assert [s.params["shift"] for s in result.ranked] == [0, 3, 6]
    assert [s.name for s in result.settings] == ["shift=3", "shift=0", "shift=6"]
    # Every setting is a line of the report, so the curves can be drawn like methods.
    assert set(result.report.curves) == {"shift=3", "shift=0", "shift=6"}
    assert result.to_json()["worst"] == "shift=6"


def test_maps_for_the_wrong_number_of_images_are_refused():
    samples = [Sample("a", Path("/x/a.png"), ("P",), (Box(0, 0, 4, 4, "P"),), width=8, height=8)]
    with pytest.raises(ValueError, match="expected 1"):
        grid_search_maps(lambda p: np.zeros((2, 1, 4, 4)), [{"k": 1}], samples, ["P"], level="figure")
