"""The viewer's site from a classifier run: what it lists, what each image carries, and how it is rebuilt."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from iconolens.explain.store import MapStore
from iconolens.errors import BadInputError
from iconolens.viewer.build import build_viewer
from iconolens.viewer.serve import viewer_server

from .conftest import CLASSES, make_run


def _payload(path: Path) -> list:
    """The arguments of the one ICONOLENS.receive* call a data script makes."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index("(") + 1, text.rindex(")")
    return json.loads(f"[{text[start:end]}]")


def _index(site: Path) -> list[dict]:
    run = _payload(site / "data" / "run.js")[0]
    entries = []
    for k in range(run["chunks"]):
        entries.extend(_payload(site / "data" / f"index-{k:03d}.js")[1])
    return entries


def test_every_readable_image_with_maps_is_listed_and_the_unreadable_one_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", n_images=5)
    page = build_viewer(run.root)
    site = page.parent
    assert page == run.root / "viewer" / "index.html" and page.is_file()
    header = _payload(site / "data" / "run.js")[0]
    assert [u["id"] for u in header["unreadable"]] == ["broken"]
    assert "broken.png" in header["unreadable"][0]["reason"]
    entries = _index(site)
    assert [e["id"] for e in entries] == [f"p{i:04d}" for i in range(5)]
    for e in entries:
        assert (site / "thumbs" / f"{e['k']}.jpg").is_file() and (site / "images" / f"{e['k']}.jpg").is_file()
        assert (site / "data" / "images" / f"{e['k']}.js").is_file()
    assert header["methods"] == ["cam", "gradcam"] and header["classes"] == list(CLASSES)


def test_predictions_use_the_models_thresholds_and_outcomes_follow_from_them(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", n_images=6, thresholds=(0.3, 0.6, 0.9), unreadable=False)
    entries = {e["id"]: e for e in _index(build_viewer(run.root).parent)}
    for sample in run.dataset.samples:
        p = run.scores[sample.id]
        predicted = [c for c, v, t in zip(CLASSES, p, (0.3, 0.6, 0.9)) if v >= t]
        entry = entries[sample.id]
        assert entry["d"] == predicted
        assert entry["p"] == [round(float(v), 4) for v in p]
        wrong = any(c not in sample.labels for c in predicted)
        missed = any(c not in predicted for c in sample.labels)
        expected = sorted(({"wrong"} if wrong else set()) | ({"missed"} if missed else set())) or ["correct"]
        assert entry["o"] == expected


def test_measures_are_those_of_the_map_against_the_images_boxes(tmp_path: Path) -> None:
    """A map that is exactly a class's figure box scores 1 against it; one beside it scores 0 at t=0.05."""
    run = make_run(tmp_path / "run", n_images=2, unreadable=False, map_size=(64, 48), methods=("cam",))
    sample = run.dataset.samples[1]  # one class, a figure box at (4, 6, 22, 36)
    cls = sample.labels[0]
    maps = np.zeros((3, 48, 64), dtype=np.float32)
    maps[CLASSES.index(cls), 6:36, 4:22] = 1.0
    MapStore(run.root / "maps" / "cam").write(sample.id, maps, run.scores[sample.id])
    other = run.dataset.samples[0]  # two classes; its first class's map lies right of its figure box
    maps = np.zeros((3, 48, 64), dtype=np.float32)
    maps[CLASSES.index(other.labels[0]), 6:36, 44:62] = 1.0
    maps[CLASSES.index(other.labels[1]), 6:36, 24:42] = 1.0  # exactly its second figure box
    MapStore(run.root / "maps" / "cam").write(other.id, maps, run.scores[other.id])
    site = build_viewer(run.root).parent
    entries = {e["id"]: e for e in _index(site)}
    assert entries[sample.id]["m"]["cam:figure:global_iou"] == pytest.approx(1.0)
    assert entries[sample.id]["m"]["cam:figure:irrelevant_attention"] == pytest.approx(0.0)
    # Mean over the image's two classes: 0 and 1.
    assert entries[other.id]["m"]["cam:figure:global_iou"] == pytest.approx(0.5)
    detail = _payload(site / "data" / "images" / f"{entries[other.id]['k']}.js")[1]
    assert detail["targetMeasures"][other.labels[0]]["cam:figure:global_iou"] == pytest.approx(0.0)
    assert detail["targetMeasures"][other.labels[1]]["cam:figure:global_iou"] == pytest.approx(1.0)


def test_a_rebuild_reuses_unchanged_pictures_and_drops_images_no_longer_in_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", n_images=3, unreadable=False)
    site = build_viewer(run.root).parent
    first = {e["id"]: e["k"] for e in _index(site)}
    stamp = (site / "thumbs" / f"{first['p0001']}.jpg").stat().st_mtime_ns
    for method in ("cam", "gradcam"):
        MapStore(run.root / "maps" / method).path_for("p0002").unlink()
    build_viewer(run.root)
    second = {e["id"]: e["k"] for e in _index(site)}
    assert second == {k: v for k, v in first.items() if k != "p0002"}
    assert (site / "thumbs" / f"{first['p0001']}.jpg").stat().st_mtime_ns == stamp
    assert not (site / "thumbs" / f"{first['p0002']}.jpg").exists()
    assert not (site / "data" / "images" / f"{first['p0002']}.js").exists()


def test_a_run_without_maps_shows_every_image_with_its_boxes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", n_images=3, unreadable=False, methods=())
    site = build_viewer(run.root, split="test").parent
    entries = _index(site)
    assert [e["id"] for e in entries] == [s.id for s in run.dataset.samples if s.split == "test"]
    detail = _payload(site / "data" / "images" / f"{entries[0]['k']}.js")[1]
    assert detail["maps"] == {}
    assert len(detail["expert"]) == len(run.dataset.samples[1].boxes)


def test_a_folder_that_is_no_run_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="nothing to view here"):
        build_viewer(tmp_path / "empty")
    with pytest.raises(BadInputError, match="does not exist"):
        build_viewer(tmp_path / "missing")


def test_the_cli_prints_the_file_url_of_the_viewer(tmp_path: Path, run_cli) -> None:
    run = make_run(tmp_path / "run", n_images=2, unreadable=False)
    code, out, _ = run_cli("view", "--run", str(run.root), "--out", str(tmp_path / "site"))
    assert code == 0
    assert f"file://{(tmp_path / 'site' / 'index.html').resolve()}" in out
    code, _, err = run_cli("view", "--run", str(tmp_path / "nowhere"))
    assert code != 0 and "does not exist" in err


def test_the_server_serves_the_site_on_the_loopback_address_only(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", n_images=1, unreadable=False)
    page = build_viewer(run.root)
    server = viewer_server(page.parent, 0)
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as response:
            assert response.read() == page.read_bytes()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    with pytest.raises(BadInputError, match="index.html is missing"):
        viewer_server(tmp_path, 0)


def test_drise_explanations_open_with_one_target_per_explained_box(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "explained"
    (folder / "scene").mkdir(parents=True)
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((30, 50, 3), dtype=np.uint8)).save(image)
    np.save(folder / "scene" / "maps.npy", np.random.default_rng(0).random((2, 30, 50)).astype(np.float16))
    targets = [{"box": [0, 0, 10, 10], "label": "person", "score": 0.9, "pointing_game": 1.0},
               {"box": [20, 5, 40, 25], "label": "face", "score": 0.7, "pointing_game": 0.0}]
    (folder / "scene" / "explanation.json").write_text(json.dumps({"image": str(image), "targets": targets}))
    site = build_viewer(folder).parent
    header = _payload(site / "data" / "run.js")[0]
    assert header["kind"] == "detector" and header["classes"] == ["person", "face"]
    entry = _index(site)[0]
    assert (entry["w"], entry["h"]) == (50, 30)
    assert entry["m"]["pointing_game"] == pytest.approx(0.5)
    assert entry["p"] == [0.9, 0.7]  # each class's best detection score
    detail = _payload(site / "data" / "images" / f"{entry['k']}.js")[1]
    assert detail["maps"]["drise"]["targets"] == ["detection 1: person (0.90)", "detection 2: face (0.70)"]
    assert detail["maps"]["drise"]["boxes"][1][:4] == [20, 5, 40, 25]


def test_a_nan_probability_and_an_all_nan_map_still_give_a_site(tmp_path: Path) -> None:
    """A NaN probability is written as null (JSON has no NaN); a map of NaN shows as empty."""
    run = make_run(tmp_path / "run", n_images=1, unreadable=False, methods=("cam",))
    sample = run.dataset.samples[0]
    scores = np.array([np.nan, 0.5, 0.2], dtype=np.float32)
    maps = np.full((3, 4, 5), np.nan, dtype=np.float32)
    MapStore(run.root / "maps" / "cam").write(sample.id, maps, scores)
    site = build_viewer(run.root).parent
    entry = _index(site)[0]
    assert entry["p"] == [None, 0.5, 0.2]
    detail = _payload(site / "data" / "images" / f"{entry['k']}.js")[1]
    assert detail["maps"]["cam"]["w"] == 5 and detail["maps"]["cam"]["h"] == 4


def test_a_rebuild_measures_again_only_the_maps_that_changed(tmp_path: Path, monkeypatch) -> None:
    from iconolens.viewer.classifier_run import ClassifierRunContent

    run = make_run(tmp_path / "run", n_images=3, unreadable=False, map_size=(64, 48), methods=("cam",))
    site = build_viewer(run.root).parent
    calls = []
    original = ClassifierRunContent._measure
    monkeypatch.setattr(ClassifierRunContent, "_measure",
                        lambda self, sample, *args: (calls.append(sample.id), original(self, sample, *args)))
    before = {e["id"]: e["m"] for e in _index(build_viewer(run.root).parent)}
    assert calls == []  # nothing changed: every measure came from the cache
    sample = run.dataset.samples[1]
    maps = np.zeros((3, 48, 64), dtype=np.float32)
    maps[CLASSES.index(sample.labels[0]), 6:36, 4:22] = 1.0  # exactly its figure box
    MapStore(run.root / "maps" / "cam").write(sample.id, maps, run.scores[sample.id])
    after = {e["id"]: e["m"] for e in _index(build_viewer(run.root).parent)}
    assert calls == [sample.id]
    assert after[sample.id]["cam:figure:global_iou"] == pytest.approx(1.0) != before[sample.id]["cam:figure:global_iou"]
    assert {k: v for k, v in after.items() if k != sample.id} == {k: v for k, v in before.items() if k != sample.id}
    assert (site / "data" / "measures-cache.json").is_file()
