"""``detect eval`` and ``detect explain`` on a real local Ray: the same boxes, maps and files as in process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ray = pytest.importorskip("ray")

from iconolens.data.coco import read_coco
from iconolens.data.records import Sample
from iconolens.detect import ray_engine
from iconolens.detect.checkpoint import save_detector
from iconolens.detect.evaluation import detect_collection
from iconolens.detect.explanations import DriseSettings, explain_images
from iconolens.detect.ray_engine import DriseActor, detect_collection_on_ray, explain_images_on_ray
from iconolens.detect.source import DetectorSource
from iconolens.detect.training import train_detector

SETTINGS = DriseSettings(n_masks=16, grid=4, batch_size=8)


@pytest.fixture(autouse=True)
def one_thread():
    """Each actor computes with one thread (one CPU each); the in-process reference does the same, since the
    last bits of a convolution depend on how many threads share it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> tuple[Path, Path, DetectorSource]:
    """Five paintings of bright squares (COCO), an unreadable file beside them, and a detector trained briefly."""
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(2)
    images, annotations = [], []
    for i in range(5):
        pixels = (rng.random((64, 72 + 4 * i, 3)) * 50).astype(np.uint8)
        x = 5 + 6 * i
        pixels[12:40, x:x + 26] = 235
        Image.fromarray(pixels).save(root / f"q{i}.png")
        images.append({"id": i + 1, "file_name": f"q{i}.png", "width": 72 + 4 * i, "height": 64})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, 12, 26, 28],
                            "area": 728, "iscrowd": 0})
    (root / "broken.png").write_bytes(b"not a picture")  # unreadable once the collection was read
    coco = root / "squares.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "square"}]}))
    model, meta = train_detector(read_coco(coco), iterations=2, batch_size=3, min_size=64, max_size=96,
                                 backbone_weights=False)
    save_detector(root / "model", model, meta)
    return root, coco, DetectorSource(root / "model")


def test_detections_on_ray_equal_the_in_process_ones(squares, local_ray) -> None:
    root, coco, source = squares
    dataset = read_coco(coco)
    broken = Sample("broken", root / "broken.png", ("square",))
    dataset = dataset.with_samples((*dataset.samples[:2], broken, *dataset.samples[2:]))
    detector, min_size, max_size = source.open()
    expected, unreadable = detect_collection(detector, dataset, min_size, max_size)
    assert sum(map(len, expected)) > 0, "the detector found nothing, so nothing would be compared"
    found, unreadable_on_ray = detect_collection_on_ray(source, dataset, batch_size=2, workers=2)
    assert found == expected
    assert unreadable_on_ray == unreadable == ["broken"]


def _explained(out: Path) -> dict[str, tuple[bytes, dict]]:
    return {folder.name: ((folder / "maps.npy").read_bytes(), json.loads((folder / "explanation.json").read_text()))
            for folder in sorted(p for p in out.iterdir() if p.is_dir())}


def test_drise_on_ray_writes_the_in_process_files(squares, local_ray, tmp_path) -> None:
    root, _, source = squares
    images = [root / f"q{i}.png" for i in range(4)]
    detector, min_size, max_size = source.open()
    expected = explain_images(detector, images, tmp_path / "inprocess", SETTINGS, min_score=0.0, min_size=min_size,
                              max_size=max_size)
    assert sum(len(r["targets"]) for r in expected) >= 2, "too few targets to test the average map"
    records = explain_images_on_ray(source, images, tmp_path / "ray", SETTINGS, min_score=0.0, workers=2)
    assert records == expected
    assert _explained(tmp_path / "ray") == _explained(tmp_path / "inprocess")
    average = json.loads((tmp_path / "ray" / "average_saliency.json").read_text())
    assert average == json.loads((tmp_path / "inprocess" / "average_saliency.json").read_text())


def test_drise_survives_a_killed_worker(squares, local_ray, tmp_path, monkeypatch, crashing_actor) -> None:
    root, _, source = squares
    images = [root / f"q{i}.png" for i in range(3)]
    flag = tmp_path / "crashed"
    monkeypatch.setattr(ray_engine, "DriseActor", crashing_actor(DriseActor, flag))
    records = explain_images_on_ray(source, images, tmp_path / "ray", SETTINGS, min_score=0.0, workers=1)
    assert flag.is_file() and int(flag.read_text()) != os.getpid(), "the worker did not crash"
    detector, min_size, max_size = source.open()
    expected = explain_images(detector, images, tmp_path / "inprocess", SETTINGS, min_score=0.0, min_size=min_size,
                              max_size=max_size)
    assert records == expected
    assert _explained(tmp_path / "ray") == _explained(tmp_path / "inprocess")


def test_cli_detect_eval_on_ray_scores_as_in_process(run_cli, squares, local_ray, tmp_path) -> None:
    _, coco, source = squares
    outputs = {}
    for engine in ("inprocess", "ray"):
        code, out, err = run_cli("detect", "eval", "--model", str(source.model), "--coco", str(coco), "--out",
                                 str(tmp_path / f"{engine}.json"), "--engine", engine, "--threads", "1")
        assert code == 0, err
        outputs[engine] = json.loads((tmp_path / f"{engine}.json").read_text())
    assert outputs["ray"] == outputs["inprocess"]


def test_cli_address_without_the_ray_engine_is_refused(run_cli, squares, tmp_path) -> None:
    root, coco, source = squares
    code, _, err = run_cli("detect", "explain", str(root / "q0.png"), "--model", str(source.model), "--out",
                           str(tmp_path / "x"), "--address", "ray://nowhere:10001")
    assert code == 2 and "--address is for the ray engine" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
