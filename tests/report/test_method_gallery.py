"""The report shows every saliency method stored in a run, side by side on the same paintings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Dataset, Sample
from iconolens.explain.store import MapStore
from iconolens.report.html import write_run_report
from iconolens.report.method_gallery import LABEL_HEIGHT, stored_methods, write_method_gallery
from iconolens.run import RunDirectory

SIDE = 64


def _run(tmp_path: Path, methods: dict[str, tuple[int, int]]) -> RunDirectory:
    """Two grey paintings; each method's map of class 'b' is hot at one cell of a 4 x 4 grid (row, column)."""
    run = RunDirectory(tmp_path / "run")
    samples = []
    for i, split in enumerate(("train", "test")):
        path = tmp_path / f"p{i}.png"
        Image.new("RGB", (SIDE, SIDE), (128, 128, 128)).save(path)
        samples.append(Sample(id=f"p{i}", path=path, labels=("b",), width=SIDE, height=SIDE, split=split))
    save_dataset_json(Dataset(samples=tuple(samples), classes=("a", "b")), run.dataset_json)
    for method, (row, col) in methods.items():
        store = MapStore(run.maps_dir(method))
        store.initialise(["a", "b"], method, {"target_layer": "features"})
        for sample in samples:
            maps = np.zeros((2, 4, 4), dtype=np.float32)
            maps[1, row, col] = 1.0
            store.write(sample.id, maps, np.array([0.2, 0.8], dtype=np.float32))
    return run


def _redness(tile: np.ndarray) -> float:
    return float(tile[..., 0].mean() - tile[..., 2].mean())


def test_gallery_has_a_column_per_method_and_each_map_where_it_is_hot(tmp_path):
    run = _run(tmp_path, {"gradcam": (0, 0), "scorecam": (3, 3), "mystery": (0, 3)})
    assert stored_methods(run) == ["gradcam", "scorecam", "mystery"]  # engine order, then others
    path = write_method_gallery(run, count=4, side=SIDE)
    sheet = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert sheet.shape == (LABEL_HEIGHT + 2 * (SIDE + LABEL_HEIGHT), 4 * SIDE, 3)
    top = LABEL_HEIGHT  # first row: the test painting
    quarter = SIDE // 4
    for column, (row, col) in enumerate([(0, 0), (3, 3), (0, 3)], start=1):
        tile = sheet[top: top + SIDE, column * SIDE: (column + 1) * SIDE]
        hot = tile[row * quarter: (row + 1) * quarter, col * quarter: (col + 1) * quarter]
        cold = tile[(3 - row) * quarter: (4 - row) * quarter, (3 - col) * quarter: (4 - col) * quarter]
        assert _redness(hot) > _redness(cold) + 50
    # The painting column is the painting itself, grey.
    painting = sheet[top: top + SIDE, :SIDE]
    assert np.allclose(painting, 128, atol=1)


def test_report_lists_every_method_with_its_settings_and_the_gallery(tmp_path):
    run = _run(tmp_path, {"cam": (1, 1), "eigencam": (2, 2)})
    text = write_run_report(run.root).read_text(encoding="utf-8")
    assert "<h2>Saliency methods</h2>" in text
    assert "<tr><td>cam</td><td>2</td><td>target_layer=features</td></tr>" in text
    assert "<tr><td>eigencam</td><td>2</td>" in text
    assert "gallery.png" in text


def test_run_without_maps_has_no_gallery(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert write_method_gallery(run) is None
    assert "Saliency methods" not in write_run_report(run.root).read_text(encoding="utf-8")
