"""`iconolens detect train|eval|explain` end to end on a tiny COCO collection made here, and bad input."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.detect.augmentation import PaintingAugmentation


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A 3-image COCO collection of bright squares and a detector trained on it for one step."""
    from iconolens.detect.checkpoint import save_detector
    from iconolens.detect.training import train_detector
    from iconolens.data.coco import read_coco

    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(1)
    images, annotations = [], []
    for i in range(3):
        pixels = (rng.random((64, 80, 3)) * 50).astype(np.uint8)
        pixels[10:40, 20:50] = 240
        Image.fromarray(pixels).save(root / f"s{i}.png")
        images.append({"id": i + 1, "file_name": f"s{i}.png", "width": 80, "height": 64})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [20, 10, 30, 30],
                            "area": 900, "iscrowd": 0})
    coco = root / "squares.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "square"}]}))
    model, meta = train_detector(read_coco(coco), iterations=1, batch_size=3, min_size=64, max_size=80,
                                 backbone_weights=False)
    save_detector(root / "model", model, meta)
    return root, coco, root / "model"


def test_train_then_eval_writes_a_detector_and_its_scores(run_cli, trained, tmp_path) -> None:
    root, coco, _ = trained
    code, out, err = run_cli("detect", "train", "--coco", str(coco), "--out",
                              str(tmp_path / "m"), "--iterations", "1", "--batch-size", "3", "--min-size", "64",
                              "--max-size", "80", "--threads", "1")
    assert code == 0, err
    written = json.loads((tmp_path / "m" / "detector.json").read_text())
    assert written["classes"] == ["square"] and written["metrics"]["augmentation"] is None
    code, _, err = run_cli("detect", "train", "--coco", str(coco), "--out", str(tmp_path / "a"), "--iterations", "1",
                           "--batch-size", "3", "--min-size", "64", "--max-size", "80", "--threads", "1", "--augment")
    assert code == 0, err
    augmented = json.loads((tmp_path / "a" / "detector.json").read_text())["metrics"]["augmentation"]
    assert augmented == {**asdict(PaintingAugmentation()), "scales": list(PaintingAugmentation().scales)}
    code, out, err = run_cli("detect", "eval", "--model", str(tmp_path / "m"), "--coco",
                              str(coco), "--out", str(tmp_path / "scores.json"), "--threads", "1")
    assert code == 0, err
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["scores"]) >= {"AP50", "AP50:95"} and scores["scores"]["images"] == 3
    from iconolens.data.coco import read_coco

    assert set(scores["detections"]) == {s.id for s in read_coco(coco).samples}


def test_explain_given_box_writes_maps_and_report(run_cli, trained, tmp_path) -> None:
    root, _, model = trained
    code, out, err = run_cli("detect", "explain", str(root / "s0.png"), "--model", str(model),
                              "--out", str(tmp_path / "x"), "--box", "20,10,50,40:square", "--masks", "8",
                              "--grid", "4", "--batch-size", "4", "--threads", "1")
    assert code == 0, err
    report = json.loads((tmp_path / "x" / "s0" / "explanation.json").read_text())
    assert report["masks_used"] == 8 and len(report["targets"]) == 1
    assert report["targets"][0]["box"] == pytest.approx([20, 10, 50, 40])
    maps = np.load(tmp_path / "x" / "s0" / "maps.npy")
    assert maps.shape == (1, *report["map_size"])
    assert (tmp_path / "x" / "s0" / "target_0.png").is_file()


def test_explain_refuses_a_box_outside_the_image(run_cli, trained, tmp_path) -> None:
    root, _, model = trained
    code, out, err = run_cli("detect", "explain", str(root / "s0.png"), "--model", str(model),
                              "--out", str(tmp_path / "x"), "--box", "200,200,300,300:square", "--masks", "4")
    assert code == 2
    assert "lies outside the 80x64 image" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_explain_refuses_an_unknown_class_and_a_missing_detector(run_cli, trained, tmp_path) -> None:
    root, _, model = trained
    code, _, err = run_cli("detect", "explain", str(root / "s0.png"), "--model", str(model),
                            "--out", str(tmp_path / "x"), "--box", "1,1,9,9:circle")
    assert code == 2 and "'circle' is not a class of the detector" in err
    code, _, err = run_cli("detect", "explain", str(root / "s0.png"), "--model",
                            str(tmp_path / "nothing"), "--out", str(tmp_path / "x"))
    assert code == 2 and "not a detector folder" in err


def test_train_refuses_pseudo_boxes_of_unknown_images(run_cli, trained, tmp_path) -> None:
    _, coco, _ = trained
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1.0}]))
    code, _, err = run_cli("detect", "train", "--coco", str(coco), "--boxes", str(boxes),
                            "--out", str(tmp_path / "m"), "--iterations", "1")
    assert code == 2 and "image 99" in err and "not in the collection" in err
    assert not (tmp_path / "m").exists()


def test_explain_detections_above_the_score_threshold(run_cli, trained, tmp_path) -> None:
    import torch

    from iconolens.detect.checkpoint import load_detector
    from iconolens.detect.evaluation import image_tensor
    from iconolens.data.images import load_image

    root, _, model = trained
    detector, meta = load_detector(model)
    pixels, _ = image_tensor(load_image(root / "s1.png"), meta.min_size, meta.max_size)
    scores = detector(pixels[None])[0].scores
    threshold = float(torch.quantile(scores, 0.5)) if len(scores) else 0.0
    code, _, err = run_cli("detect", "explain", str(root / "s1.png"), "--model", str(model),
                            "--out", str(tmp_path / "x"), "--min-score", str(threshold), "--masks", "4",
                            "--grid", "4", "--threads", "1")
    assert code == 0, err
    report = json.loads((tmp_path / "x" / "s1" / "explanation.json").read_text())
    assert len(report["targets"]) == int((scores >= threshold).sum())
    assert all(t["score"] >= threshold - 1e-6 for t in report["targets"])


def test_train_refuses_an_unknown_backbone_in_one_sentence(run_cli, trained, tmp_path) -> None:
    _, coco, _ = trained
    code, _, err = run_cli("detect", "train", "--coco", str(coco), "--backbone", "resnet50",
                            "--out", str(tmp_path / "m"), "--iterations", "1")
    assert code == 2 and "unknown detector backbone 'resnet50'" in err and "mobilenet_v2_fpn" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_detector_commands_take_a_device_and_refuse_an_unknown_one(run_cli, trained, tmp_path) -> None:
    root, coco, _ = trained
    code, _, err = run_cli("detect", "train", "--coco", str(coco), "--out", str(tmp_path / "m"), "--iterations",
                           "1", "--batch-size", "3", "--min-size", "64", "--max-size", "80", "--threads", "1",
                           "--device", "cpu")
    assert code == 0, err
    code, _, err = run_cli("detect", "eval", "--model", str(tmp_path / "m"), "--coco", str(coco),
                           "--threads", "1", "--device", "cpu")
    assert code == 0, err
    for command in (["train", "--coco", str(coco), "--out", str(tmp_path / "n")],
                    ["eval", "--model", str(tmp_path / "m"), "--coco", str(coco)]):
        code, _, err = run_cli("detect", *command, "--device", "npu")
        assert code == 2 and "unknown device 'npu'" in err and "Traceback" not in err
    assert not (tmp_path / "n").exists()


def test_eval_gated_by_a_run_without_a_classifier_is_one_sentence(run_cli, trained, tmp_path) -> None:
    _, coco, model = trained
    code, _, err = run_cli("detect", "eval", "--model", str(model), "--coco", str(coco), "--presence",
                           str(tmp_path / "no-run"), "--threads", "1")
    assert code != 0
    assert "no trained model" in err and "Traceback" not in err


def test_eval_with_test_flip_reports_the_merged_views_of_each_image(run_cli, trained, tmp_path) -> None:
    from iconolens.data.coco import read_coco
    from iconolens.detect.checkpoint import load_detector
    from iconolens.detect.evaluation import detect_collection
    from iconolens.detect.mirrored import MirroredViews

    _, coco, model = trained
    found = {}
    for flag in ([], ["--test-flip"]):
        out = tmp_path / f"scores{len(flag)}.json"
        code, _, err = run_cli("detect", "eval", "--model", str(model), "--coco", str(coco), "--out", str(out),
                               "--threads", "1", *flag)
        assert code == 0, err
        found[bool(flag)] = json.loads(out.read_text())["detections"]
    detector, meta = load_detector(model)
    dataset = read_coco(coco)
    both, _ = detect_collection(MirroredViews(detector), dataset, meta.min_size, meta.max_size)
    expected = {s.id: [[*d.xyxy, d.label, d.score] for d in boxes] for s, boxes in zip(dataset.samples, both)}
    assert found[True] == json.loads(json.dumps(expected))  # as the library merges the two views
    assert found[True] != found[False]  # the mirror images change what is found
