"""Figure boxes seeded by faces: one box per painted person, from a pretrained face detector and image labels.

A presence classifier's map peaks on a painting's most telling part, so boxes drawn from it find one region
where there are several people, and often only a face. A face detector trained on photographs (MTCNN, shipped
in facenet-pytorch) counts the people instead: each face it finds becomes a figure box by the proportions of
the human figure that artists are taught (the academic canon): the head is the face box grown by a third
upwards for the skull and hair, a standing figure is 7.5 heads tall and, with arms and drapery, about three
face widths wide; the box is clipped to the image, so a bust or a half-length portrait ends at the frame.
These constants come from the canon, not from any collection's boxes. Painted people sit, kneel and are cut by
the frame, so by default each figure is then cut out of the painting around its face (:mod:`figure_cut`).

Which class a face's figure belongs to comes from the image labels: the only label of a single-label image, or
among several labels the one whose (normalised) map is strongest inside the figure box. Images whose faces the
detector misses can keep the boxes of another source (``fallback``). The weakly supervised chain no longer does
by default: on People-Art, a detector taught one box around the map on the paintings without a found face
scored AP@0.5 0.148 on val, and one taught the face figures alone 0.264 (docs/benchmarks.md). Faces of
non-realistic styles (cubism, icons) are often not found; a class with no face at all keeps its fallback boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from iconolens.data.images import load_image
from iconolens.data.records import Dataset, Sample
from iconolens.detect.figure_cut import FigureCut, cut_figure
from iconolens.errors import IconolensError
from iconolens.evaluate.boxes import BoxRecipe, DerivedBox, DerivedBoxes
from iconolens.evaluate.localisation import normalised_maps
from iconolens.explain.store import MapStore
from iconolens.progress import progress

Faces = Callable[[torch.Tensor], list[tuple[float, float, float, float, float]]]
#: A face's figure must reach this percentile of its class's map (the one-box recipe's foreground threshold).
MAP_PERCENTILE = 70.0


@dataclass(frozen=True)
class FigureProportions:
    """The canon's proportions, in units of the detected face box."""

    head_height: float = 4 / 3  # the whole head (skull, hair) over the face box's height (brows to chin)
    figure_heads: float = 7.5  # a standing figure's height in heads
    figure_width: float = 3.0  # the figure's width in face widths (shoulders, arms, drapery)

    def figure_box(self, face: tuple[float, float, float, float], width: int, height: int
                   ) -> tuple[float, float, float, float]:
        """The figure box of a face ``(x0, y0, x1, y1)`` in an image of ``width`` x ``height``, clipped to it."""
        x0, y0, x1, y1 = face
        head = self.head_height * (y1 - y0)
        top = y1 - head
        half = self.figure_width * (x1 - x0) / 2
        centre = (x0 + x1) / 2
        return (max(0.0, centre - half), max(0.0, top), min(float(width), centre + half),
                min(float(height), top + self.figure_heads * head))


def mtcnn_faces(min_face_size: int = 12, min_score: float = 0.9) -> Faces:
    """MTCNN's faces of one ``(3, H, W)`` image in [0, 1], as ``(x0, y0, x1, y1, probability)``."""
    from iconolens.detect.mtcnn import MTCNNDetector

    detector = MTCNNDetector(min_face_size=min_face_size, min_score=min_score)

    def faces(pixels: torch.Tensor) -> list[tuple[float, float, float, float, float]]:
        found = detector(pixels[None])[0]
        return [(*(float(v) for v in box), float(p)) for box, p in zip(found.boxes, found.scores)]

    return faces


def _shrunk(sample: Sample, max_side: int) -> tuple[Image.Image, float, tuple[int, int]]:
    """The image shrunk to at most ``max_side`` pixels (enlarging to 1,024 found 12% more faces on People-Art,
    and with the figures cut boxes only a little better, mAP@0.5 0.219 against 0.211, at three times the cost),
    the scale, and the original size."""
    image = load_image(sample.path)
    scale = min(1.0, max_side / max(image.size))
    size = image.size
    if scale < 1.0:
        image = image.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
    return image, scale, size


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _figure(face: tuple[float, float, float, float], others: list[tuple[float, float, float, float]],
            image: Image.Image, scale: float, size: tuple[int, int], proportions: FigureProportions,
            cut: FigureCut | None) -> tuple[float, float, float, float]:
    """The figure box of ``face`` (in the shrunk ``image``'s pixels) in the original image's pixels."""
    canon = proportions.figure_box(tuple(v / scale for v in face), *size)
    if cut is None:
        return canon
    shrunk = cut_figure(image, face, tuple(v * scale for v in canon), others, proportions.head_height, cut)
    return (shrunk[0] / scale, shrunk[1] / scale, min(float(size[0]), shrunk[2] / scale),
            min(float(size[1]), shrunk[3] / scale))


def _label_maps(sample: Sample, store: MapStore | None, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The image's normalised maps of its labels, at the image's size (none without stored maps)."""
    if store is None or not store.has(sample.id):
        return {}
    raw, _ = store.read(sample.id)
    index = {c: i for i, c in enumerate(store.classes)}
    labels = [c for c in sample.labels if c in index]
    if not labels:
        return {}
    width, height = size
    return dict(zip(labels, normalised_maps(raw[[index[c] for c in labels]], (height, width))))


def _inside(saliency: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return saliency[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


def _class_of(sample: Sample, box: tuple[float, float, float, float], maps: dict[str, np.ndarray]) -> str | None:
    """The image label this figure shows: the only one, or the one whose map is strongest inside the box."""
    if len(sample.labels) == 1:
        return sample.labels[0]
    if not maps:
        return None
    names = list(maps)
    return names[int(np.argmax([float(_inside(maps[c], box).mean()) for c in names]))]


def face_figure_boxes(
    dataset: Dataset,
    faces: Faces | None = None,
    store: MapStore | None = None,
    proportions: FigureProportions = FigureProportions(),
    max_side: int = 640,
    fallback: DerivedBoxes | None = None,
    map_percentile: float | None = MAP_PERCENTILE,
    cut: FigureCut | None = FigureCut(),
) -> DerivedBoxes:
    """A figure box per face found in each labelled image (see the module's docstring); images without a face
    keep their boxes in ``fallback``. A box's score is the face's probability: the image label already says the
    class is there, and a confident face is better evidence of a figure than a map, so these rank first.

    With maps in ``store``, a figure is kept only where its class's map reaches the map's ``map_percentile``-th
    percentile inside the box (the one-box recipe's foreground) and is not zero there: a face away from
    everything the class's map points at belongs to someone else (a bystander in a painting labelled "horse").

    With ``cut`` each figure is cut out of the painting by GrabCut around its face (:mod:`figure_cut`); without,
    the box is the canon's. On People-Art's train split the cut raised the boxes' mAP@0.5 from 0.137 to 0.211."""
    faces = faces or mtcnn_faces()
    boxes: list[DerivedBox] = []
    selected: list[str] = []
    counts = {"images": 0, "faces": 0, "unreadable_images": 0, "no_face": 0, "class_unknown": 0,
              "outside_the_map": 0}
    for sample in progress([s for s in dataset.samples if s.labels], "finding faces"):
        counts["images"] += 1
        try:
            image, scale, size = _shrunk(sample, max_side)
        except IconolensError:
            counts["unreadable_images"] += 1
            continue
        found = faces(_tensor(image))
        maps = _label_maps(sample, store, size) if found else {}
        cuts = {c: float(np.percentile(m, map_percentile)) for c, m in maps.items()} if map_percentile is not None \
            else {}
        kept = 0
        for k, (*face, probability) in enumerate(found):
            others = [tuple(f[:4]) for j, f in enumerate(found) if j != k]
            box = _figure(tuple(face), others, image, scale, size, proportions, cut)
            label = _class_of(sample, box, maps)
            if label is None:
                counts["class_unknown"] += 1
                continue
            peak = float(_inside(maps[label], box).max()) if label in cuts else 1.0
            if label in cuts and not (peak >= cuts[label] and peak > 0.0):  # a map that is zero there points elsewhere
                counts["outside_the_map"] += 1
                continue
            boxes.append(DerivedBox(sample.id, label, *box, mean_activation=probability, probability=1.0))
            kept += 1
        counts["faces"] += len(found)
        if kept:
            selected.append(sample.id)
        else:
            counts["no_face"] += 1
    counts["boxes"] = len(boxes)
    counts["selected_images"] = len(selected)
    faces_found = DerivedBoxes("faces", BoxRecipe(level="figure", gate=False), tuple(boxes), tuple(selected), counts)
    return faces_found if fallback is None else with_fallback(faces_found, fallback)


def with_fallback(faces: DerivedBoxes, fallback: DerivedBoxes, classes: set[str] | None = None) -> DerivedBoxes:
    """The face figures, and ``fallback``'s boxes of each (image, class) that no face gave a figure (with
    ``classes``, of those classes only)."""
    have = {(b.sample_id, b.label) for b in faces.boxes}
    extra = [b for b in fallback.boxes
             if (b.sample_id, b.label) not in have and (classes is None or b.label in classes)]
    counts = {**faces.counts, "fallback_boxes": len(extra), "boxes": len(faces.boxes) + len(extra)}
    chosen = set(faces.selected)
    selected = faces.selected + tuple(dict.fromkeys(b.sample_id for b in extra if b.sample_id not in chosen))
    counts["selected_images"] = len(selected)
    return DerivedBoxes(f"faces+{fallback.method}", replace(fallback.recipe, level="figure"),
                        faces.boxes + tuple(extra), selected, counts)
