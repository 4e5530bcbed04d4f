"""Boxes, detections and saliency maps out as Web Annotations and a IIIF manifest, checked against numbers
worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.presentation3 import CONTEXT, validate_presentation3
from iconolens.data.records import Box, Canvas, Dataset, Sample
from iconolens.data.web_annotations import (
    annotation_page,
    annotations_path,
    box_target,
    boxes_to_annotations,
    detections_to_annotations,
    write_explanation_page,
)
from iconolens.detect.evaluation import ScoredBox
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory

CANVAS = "https://example.org/iiif/peter/canvas/1"


def _painting(tmp_path: Path, width: int = 1000, height: int = 750, canvas: Canvas | None = None) -> Sample:
    return Sample("peter", tmp_path / "peter.jpg", ("Peter",), width=width, height=height, canvas=canvas)


def _xywh(target: str) -> tuple[str, list[int]]:
    source, _, fragment = target.partition("#xywh=")
    return source, [int(v) for v in fragment.split(",")]


def test_a_box_on_a_larger_canvas_is_scaled_into_canvas_coordinates(tmp_path):
    sample = _painting(tmp_path, canvas=Canvas(CANVAS, 4000, 3000))
    assert box_target(sample, (10, 20, 110, 220)) == f"{CANVAS}#xywh=40,80,400,800"
    # Outward rounding: 40.8 -> 40, 82.4 -> 82 and the far edges 440.4 -> 441, 883.6 -> 884.
    assert box_target(sample, (10.2, 20.6, 110.1, 220.9)) == f"{CANVAS}#xywh=40,82,401,802"
    # A box reaching past the image is clipped to the canvas.
    assert box_target(sample, (990, 740, 1010, 760)) == f"{CANVAS}#xywh=3960,2960,40,40"
    # x and y scale apart (2 and 4).
    stretched = _painting(tmp_path, canvas=Canvas(CANVAS, 2000, 3000))
    assert box_target(stretched, (10, 20, 110, 220)) == f"{CANVAS}#xywh=20,80,200,800"
    # 297 * 4000 / 1188 is 1000.0000000000001 in floating point: still the edge 1000, not 1001.
    odd = _painting(tmp_path, width=1188, height=891, canvas=Canvas(CANVAS, 4000, 3000))
    assert box_target(odd, (0, 0, 297, 297)) == f"{CANVAS}#xywh=0,0,1000,1000"


def test_a_sample_without_canvas_is_targeted_by_its_file_uri_in_image_pixels(tmp_path):
    sample = _painting(tmp_path)
    target = box_target(sample, (10, 20, 110, 220))
    assert target == (tmp_path / "peter.jpg").resolve().as_uri() + "#xywh=10,20,100,200"
    assert target.startswith("file:///")


def test_a_page_numbers_its_annotations_and_carries_label_and_score(tmp_path):
    canvas_sample = _painting(tmp_path, canvas=Canvas(CANVAS, 4000, 3000))
    other = Sample("paul", tmp_path / "paul.png", ("Paul",), width=100, height=80)
    dataset = Dataset((canvas_sample, other), ("Peter", "Paul"))
    found = [[ScoredBox(10, 20, 110, 220, "Peter", 0.87349)], [ScoredBox(0, 0, 50, 40, "Paul", 0.5)]]
    page = annotation_page(detections_to_annotations(dataset, found), "https://example.org/pages/p1", "detections")
    assert page["@context"] == CONTEXT and page["type"] == "AnnotationPage"
    assert [a["id"] for a in page["items"]] == ["https://example.org/pages/p1/a1", "https://example.org/pages/p1/a2"]
    first = page["items"][0]
    assert first["motivation"] == "tagging" and first["type"] == "Annotation"
    assert first["body"][0] == {"type": "TextualBody", "value": "Peter", "format": "text/plain", "purpose": "tagging"}
    assert first["body"][1]["value"] == "score 0.873" and first["body"][1]["purpose"] == "describing"
    assert first["target"] == f"{CANVAS}#xywh=40,80,400,800"
    assert page["items"][1]["target"].endswith("paul.png#xywh=0,0,50,40")
    assert validate_presentation3(page) == []
    # Boxes without a score (expert or pseudo boxes) get the label alone.
    plain = boxes_to_annotations(dataset, {"paul": [Box(0, 0, 50, 40, "Paul")]})
    assert [b["value"] for b in plain[0]["body"]] == ["Paul"]


def test_the_validator_names_what_is_wrong():
    manifest = {
        "@context": CONTEXT, "id": "https://example.org/m", "type": "Manifest", "label": "not a map",
        "items": [{
            "id": "https://example.org/c", "type": "Canvas", "label": {"en": ["c"]}, "width": 10.5, "height": 8,
            "items": [{"id": "https://example.org/c/p", "type": "AnnotationPage", "items": [{
                "id": "https://example.org/c/p/a", "type": "Annotation", "motivation": "tagging",
                "body": {"id": "https://example.org/i.png", "type": "Image"}, "target": "https://example.org/c"}]}],
            "annotations": [{"id": "https://example.org/c/q", "type": "AnnotationPage", "items": [
                {"id": "https://example.org/c/q/a", "type": "Annotation", "motivation": "staring",
                 "body": {"type": "TextualBody", "value": "x"}, "target": "https://example.org/c#xywh=1,2,3"},
                {"id": "https://example.org/c/q/a", "type": "Annotation", "motivation": "tagging",
                 "body": {"type": "TextualBody", "value": "x"}, "target": "https://example.org/other#xywh=1,2,3,4"},
            ]}],
        }],
    }
    problems = validate_presentation3(manifest)
    expected = ["$.label: must be a language map", "$.items[0]: width must be a positive integer",
                "$.items[0].items[0].items[0].motivation: annotations in a canvas's items must be painting",
                "$.items[0].annotations[0].items[0].motivation: 'staring' is not",
                "$.items[0].annotations[0].items[0].target: fragment 'xywh=1,2,3'",
                "$.items[0].annotations[0].items[1]: id https://example.org/c/q/a is used twice",
                "$.items[0].annotations[0].items[1].target: targets https://example.org/other"]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)
    assert validate_presentation3({**manifest, "@context": "http://iiif.io/api/presentation/2/context.json"})[0] \
        .startswith("$: @context")


# -- a tiny run: one painting from a IIIF canvas four times its image's size, one local image --------------

W, H = 40, 30


@pytest.fixture
def run(tmp_path: Path) -> RunDirectory:
    """Two 40x30 images; the 'good' maps of Peter are hot on the top-left quarter (x < 20, y < 15) only."""
    rundir = RunDirectory(tmp_path / "run")
    samples = []
    for sid, canvas in (("iiif", Canvas(CANVAS, 4 * W, 4 * H, "https://example.org/iiif/peter/manifest")),
                        ("local", None)):
        path = tmp_path / f"{sid}.png"
        Image.new("RGB", (W, H), (90, 60, 30)).save(path)
        samples.append(Sample(sid, path, ("Peter",), width=W, height=H, split="test", canvas=canvas))
    save_dataset_json(Dataset(samples=tuple(samples), classes=("Peter", "Paul")), rundir.dataset_json)
    store = MapStore(rundir.maps_dir("good"))
    store.initialise(["Peter", "Paul"], "good", {})
    for sample in samples:
        maps = np.zeros((2, H, W), dtype=np.float32)
        maps[0, :15, :20] = 1.0
        maps[1, 15:, 20:] = 1.0
        store.write(sample.id, maps, np.array([0.8, 0.2], dtype=np.float32))
    return rundir


def _scaled(bbox: list[float], factor: int) -> list[int]:
    x, y, w, h = bbox
    return [int(x * factor), int(y * factor), int(w * factor), int(h * factor)]


def test_boxes_command_writes_pages_with_the_coco_files_boxes(run_cli, run):
    code, out, err = run_cli("boxes", "--run", str(run.root), "--method", "good", "--no-gate")
    assert code == 0, err
    coco = json.loads((run.boxes_dir / "good_figure_detections.json").read_text())
    page_path = run.boxes_dir / "good_figure_detections.annotations.json"
    assert page_path == annotations_path(run.boxes_dir / "good_figure_detections.json")
    page = json.loads(page_path.read_text())
    assert validate_presentation3(page) == []
    assert page["id"] == page_path.resolve().as_uri()
    local_uri = (run.root.parent / "local.png").resolve().as_uri()
    expected = {(CANVAS if d["sample_id"] == "iiif" else local_uri,
                 tuple(_scaled(d["bbox"], 4 if d["sample_id"] == "iiif" else 1))) for d in coco}
    found = {(source, tuple(box)) for source, box in (_xywh(a["target"]) for a in page["items"])}
    assert found == expected
    assert (CANVAS, (0, 0, 80, 60)) in found  # the hot quarter of the 40x30 image on the 160x120 canvas
    assert len(page["items"]) == len(coco) == 2
    assert {a["body"][1]["value"] for a in page["items"]} == {f"score {d['score']:.3f}" for d in coco}
    pseudo = json.loads((run.boxes_dir / "good_figure_pseudo_coco.annotations.json").read_text())
    assert sorted(a["target"] for a in pseudo["items"]) == sorted(a["target"] for a in page["items"])
    assert all(len(a["body"]) == 1 for a in pseudo["items"])  # pseudo ground truth has no scores


class _CentreDetector:
    """Finds one Peter over the middle half of every image (in the pixels it is given), with score 0.9."""

    classes = ("background", "Peter")

    def __call__(self, images):
        import torch

        from iconolens.detect.detections import Detections

        h, w = images.shape[-2:]
        box = torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]])
        return [Detections(box, torch.tensor([0.9]), torch.tensor([[0.1, 0.9]]), classes=torch.tensor([1]))
                for _ in range(images.shape[0])]


def test_detect_eval_and_explain_write_pages_of_their_detections(run_cli, run, tmp_path, monkeypatch):
    # The detector sees the 40x30 images at 80x60 and finds (20,15,60,45) there: (10,7.5,30,22.5) in image pixels.
    monkeypatch.setattr("iconolens.detect.source.DetectorSource.open", lambda *args, **kwargs: (_CentreDetector(), 60, 80))
    code, _, err = run_cli("detect", "eval", "--model", str(tmp_path), "--run", str(run.root),
                           "--out", str(tmp_path / "eval" / "scores.json"), "--threads", "1")
    assert code == 0, err
    page = json.loads((tmp_path / "eval" / "scores.annotations.json").read_text())
    assert validate_presentation3(page) == []
    local_uri = (run.root.parent / "local.png").resolve().as_uri()
    assert [a["target"] for a in page["items"]] == [f"{CANVAS}#xywh=40,30,80,60", f"{local_uri}#xywh=10,7,20,16"]
    assert [[b["value"] for b in a["body"]] for a in page["items"]] == [["Peter", "score 0.900"]] * 2

    code, _, err = run_cli("detect", "explain", str(run.root.parent / "local.png"), "--model", str(tmp_path),
                           "--out", str(tmp_path / "x"), "--masks", "8", "--grid", "4", "--batch-size", "8",
                           "--threads", "1")
    assert code == 0, err
    page = json.loads((tmp_path / "x" / "local" / "explanation.annotations.json").read_text())
    assert validate_presentation3(page) == []
    assert [a["target"] for a in page["items"]] == [f"{local_uri}#xywh=10,7,20,16"]


def _file(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(unquote(urlparse(uri).path))


def test_export_writes_a_valid_manifest_of_existing_files_with_hot_overlays(run_cli, run, tmp_path):
    assert run_cli("boxes", "--run", str(run.root), "--method", "good", "--no-gate")[0] == 0
    # detect explain on the downloaded image of the IIIF painting: a page in image pixels of that file
    write_explanation_page(run.root / "explained" / "iiif" / "explanation.annotations.json",
                           run.root.parent / "iiif.png", (W, H), [{"box": [10, 5, 30, 25], "label": "Peter",
                                                                   "score": 0.9}])
    out = tmp_path / "export"
    code, text, err = run_cli("export", "iiif", "--run", str(run.root), "--out", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert validate_presentation3(manifest) == []
    assert manifest["id"] == (out / "manifest.json").resolve().as_uri()
    canvases = {c["label"]["none"][0]: c for c in manifest["items"]}
    assert (canvases["iiif"]["id"], canvases["iiif"]["width"], canvases["iiif"]["height"]) == (CANVAS, 160, 120)
    local = canvases["local"]
    assert (local["id"], local["width"], local["height"]) == (out.resolve().as_uri() + "/canvas/local", W, H)

    for name, canvas in canvases.items():
        body = canvas["items"][0]["items"][0]["body"]
        assert _file(body["id"]).read_bytes() == (run.root.parent / f"{name}.png").read_bytes()
        pages = [p for p in canvas["annotations"] if "items" not in p]
        overlays = [p for p in canvas["annotations"] if "items" in p]
        # The derived boxes and, on the IIIF painting, the explained detection; pseudo ground truth left out.
        assert len(pages) == (2 if name == "iiif" else 1)
        targets = []
        for reference in pages:
            page = json.loads(_file(reference["id"]).read_text())
            assert page["id"] == reference["id"] and validate_presentation3(page) == []
            targets += [a["target"] for a in page["items"]]
        if name == "iiif":  # derived box (0,0,20,15) and explained box (10,5,30,25), both times 4
            assert sorted(targets) == sorted([f"{CANVAS}#xywh=0,0,80,60", f"{CANVAS}#xywh=40,20,80,80"])
        else:
            assert targets == [f"{local['id']}#xywh=0,0,20,15"]

        [layer] = overlays
        [annotation] = layer["items"]  # the image is labelled Peter only
        assert annotation["motivation"] == "supplementing" and annotation["target"] == canvas["id"]
        assert annotation["body"]["type"] == "Image" and "Peter" in annotation["label"]["en"][0]
        picture = Image.open(_file(annotation["body"]["id"]))
        assert picture.mode == "RGBA" and picture.size == (W, H)
        assert _file(annotation["body"]["id"]).name == f"{name}_Peter.png"
        pixels = np.asarray(picture, dtype=np.float64)
        hot, cold = pixels[2:12, 2:17], pixels[18:, 23:]
        assert hot[..., 3].min() > 100 and cold[..., 3].max() == 0  # opaque where hot, transparent where cold
        assert hot[..., 0].mean() > hot[..., 2].mean()  # jet: red where hot

    code, text, err = run_cli("export", "iiif", "--run", str(run.root), "--out", str(tmp_path / "web"),
                              "--base-url", "https://museum.example/iiif/run1/", "--max-images", "1", "--all-classes")
    assert code == 0, err
    manifest = json.loads((tmp_path / "web" / "manifest.json").read_text())
    assert manifest["id"] == "https://museum.example/iiif/run1/manifest.json" and len(manifest["items"]) == 1
    [layer] = [p for p in manifest["items"][0]["annotations"] if "items" in p]
    assert len(layer["items"]) == 2  # Peter and Paul
    for annotation in layer["items"]:
        rel = annotation["body"]["id"].removeprefix("https://museum.example/iiif/run1/")
        assert Image.open(tmp_path / "web" / rel).size == (W, H)


@pytest.mark.parametrize("args, message", [
    (("--method", "nope"), "no maps of method 'nope' in the run (it has maps of good)"),
    (("--base-url", "museum/iiif"), "--base-url must be an http(s):// or file:// URL"),
])
def test_export_bad_input_is_one_sentence(run_cli, run, tmp_path, args, message):
    code, _, err = run_cli("export", "iiif", "--run", str(run.root), "--out", str(tmp_path / "x"), *args)
    assert code == 2 and message in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_export_of_a_run_without_dataset_is_refused(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("export", "iiif", "--run", str(tmp_path / "empty"))
    assert code == 2 and "no dataset.json" in err and err.strip().count("\n") == 0, err
