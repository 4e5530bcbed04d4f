"""Boxes from saliency maps: weakly supervised localisation, following Pinciroli Vago (2021, section 4.3).

The procedure, each step an option of :class:`BoxRecipe`:

1. quality gate (optional, needs expert boxes): keep a map only if it already localises well: mean
   component IoU > 0.165 at t = 0.1 for attribute boxes, global IoU > 0.24 at t = 0.05 for figure boxes;
2. threshold the normalised map: 0.1 (attribute) or 0.05 (figure), or instead the map's own p-th
   percentile (Bae et al., 2020), which adapts to how spread out each map is;
3. attribute boxes only: split the foreground into connected components (8-connectivity) and drop those
   whose mean activation is below half the mean of all components' mean activations (weak, usually
   irrelevant areas);
4. one box around each remaining component (attribute) or one box around the whole foreground (figure).

With ``BoxRecipe(instances=True)`` steps 2 to 4 are replaced by one box per salient instance
(:func:`iconolens.evaluate.instances.instance_boxes`): a group scene then gets a box per figure instead of
one box around the whole group. The default stays the thesis's procedure.

Each box's score is its mean activation (over the foreground pixels it was drawn around) times the model's
probability for the class, so boxes of confidently recognised classes on strong activations rank first.
Boxes are derived for the classes an image is labelled with (the weak, image-level supervision).

The gate is applied to each method's own maps; the thesis required all four methods to pass it, which
:func:`derive_boxes` supports through ``gate_stores``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from iconolens.atomic import write_json_atomically
from iconolens.data.images import load_image
from iconolens.data.records import Box, Dataset, Level, Sample
from iconolens.errors import BadInputError, IconolensError
from iconolens.evaluate.instances import (
    DEFAULT_MAX_INSTANCES,
    DEFAULT_MIN_DISTANCE,
    DEFAULT_NMS_IOU,
    DEFAULT_REGION_FRACTION,
    DEFAULT_RELATIVE_HEIGHT,
    MapBox,
    check_instance_parameters,
    instance_boxes,
)
from iconolens.evaluate.localisation import (
    image_size_of,
    localisation_curves,
    normalised_maps,
    pixel_box,
)
from iconolens.evaluate.segments import SegmentSeeds, segment_boxes
from iconolens.explain.store import MapStore
from iconolens.progress import progress

DEFAULT_THRESHOLD: dict[str, float] = {"attribute": 0.1, "figure": 0.05}
GATE_THRESHOLD: dict[str, float] = {"attribute": 0.1, "figure": 0.05}
GATE_MINIMUM: dict[str, float] = {"attribute": 0.165, "figure": 0.24}
DERIVED_ATTRIBUTE = "region"


@dataclass(frozen=True)
class BoxRecipe:
    """The options of the procedure; ``None`` means the thesis's value for the level.

    ``instances`` draws one box per salient instance (see :mod:`iconolens.evaluate.instances`) with the
    five parameters after it, instead of thresholding the map; threshold and percentile then do not apply.
    ``segments`` instead snaps boxes to the object regions GrabCut cuts out of the image with the map as seed
    (see :mod:`iconolens.evaluate.segments`); it needs the image itself.
    """

    level: Level = "figure"
    gate: bool = True
    threshold: float | None = None
    percentile: float | None = None
    drop_weak_components: bool = True
    gate_minimum: float | None = None
    instances: bool = False
    min_distance: float = DEFAULT_MIN_DISTANCE
    relative_height: float = DEFAULT_RELATIVE_HEIGHT
    region_fraction: float = DEFAULT_REGION_FRACTION
    nms_iou: float = DEFAULT_NMS_IOU
    max_instances: int = DEFAULT_MAX_INSTANCES
    segments: SegmentSeeds | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and self.percentile is not None:
            raise ValueError("give a fixed threshold or a percentile, not both")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise ValueError(f"percentile must be between 0 and 100, got {self.percentile}")
        if self.segments is not None and (self.instances or self.threshold is not None or self.percentile is not None):
            raise BadInputError("boxes snapped to segments are seeded by the map's percentiles, so instances, a "
                                "threshold or a percentile do not apply")
        if self.instances:
            if self.threshold is not None or self.percentile is not None:
                raise BadInputError("instance boxes grow from each peak, so a threshold or percentile does not apply")
            check_instance_parameters(self.min_distance, self.relative_height, self.region_fraction, self.nms_iou,
                                      self.max_instances)

    def boxes(self, saliency: np.ndarray, image: Image.Image | None = None) -> list[MapBox]:
        """The boxes this recipe draws on one normalised map (of ``image``'s size, which ``segments`` needs)."""
        if self.segments is not None:
            if image is None:
                raise BadInputError("boxes snapped to segments need the image the map was computed on")
            return segment_boxes(image, saliency, self.segments)
        if self.instances:
            return instance_boxes(saliency, min_distance=self.min_distance, relative_height=self.relative_height,
                                  region_fraction=self.region_fraction, nms_iou=self.nms_iou,
                                  max_instances=self.max_instances)
        return boxes_from_map(saliency, self.level, self.cut(saliency), self.drop_weak_components)

    def cut(self, saliency: np.ndarray) -> float:
        """The threshold for one map: fixed, or the map's own percentile."""
        if self.percentile is not None:
            return float(np.percentile(saliency, self.percentile))
        return DEFAULT_THRESHOLD[self.level] if self.threshold is None else float(self.threshold)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "gate": self.gate,
            "gate_threshold": GATE_THRESHOLD[self.level],
            "gate_minimum": GATE_MINIMUM[self.level] if self.gate_minimum is None else self.gate_minimum,
            "threshold": None if self.percentile is not None or self.instances else self.cut(np.zeros(1)),
            "percentile": self.percentile,
            "drop_weak_components": self.drop_weak_components,
            "instances": self.instances,
            "instance_parameters": {
                "min_distance": self.min_distance,
                "relative_height": self.relative_height,
                "region_fraction": self.region_fraction,
                "nms_iou": self.nms_iou,
                "max_instances": self.max_instances,
            } if self.instances else None,
            "segments": None if self.segments is None else self.segments.to_json(),
        }


def boxes_from_map(
    saliency: np.ndarray,
    level: Level,
    threshold: float,
    drop_weak_components: bool = True,
) -> list[MapBox]:
    """Boxes around a normalised ``(H, W)`` map's foreground (value >= ``threshold``); none if it is empty."""
    values = np.asarray(saliency, dtype=np.float64)
    mask = values >= threshold
    if not mask.any():
        return []
    if level == "figure":
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        return [MapBox(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1,
                       float(values[mask].mean()))]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=count)
    means = sums[1:] / stats[1:, cv2.CC_STAT_AREA]
    keep = np.ones(count - 1, dtype=bool)
    if drop_weak_components:
        keep = means >= 0.5 * means.mean()
    boxes = []
    for i in np.flatnonzero(keep):
        x, y, w, h = (int(v) for v in stats[i + 1, :4])
        boxes.append(MapBox(x, y, x + w, y + h, float(means[i])))
    return boxes


def passes_gate(saliency: np.ndarray, truth: Sequence[tuple[float, float, float, float]], level: Level,
                minimum: float | None = None) -> bool:
    """Whether a map localises its expert boxes well enough for its derived boxes to be trusted."""
    if not truth:
        return False
    result = localisation_curves(saliency, truth, thresholds=[GATE_THRESHOLD[level]])
    value = result.mean_component_iou[0] if level == "attribute" else result.global_iou[0]
    return bool(value > (GATE_MINIMUM[level] if minimum is None else minimum))


@dataclass(frozen=True)
class DerivedBox:
    """A box derived from one class's map of one image, with its score."""

    sample_id: str
    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    mean_activation: float
    probability: float
    peak_height: float | None = None

    @property
    def score(self) -> float:
        return self.mean_activation * self.probability

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class DerivedBoxes:
    """The result of the procedure on a collection: boxes, the images it kept, and what it left out."""

    method: str
    recipe: BoxRecipe
    boxes: tuple[DerivedBox, ...]
    selected: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


def _truth(sample: Sample, cls: str, level: Level, width: int, height: int) -> list[tuple[float, ...]]:
    boxes = []
    for b in sample.boxes_of(cls, level):
        c = pixel_box(b.xyxy, width, height)
        if c[2] > c[0] and c[3] > c[1]:
            boxes.append(b.xyxy)
    return boxes


def derive_boxes(
    dataset: Dataset,
    store: MapStore,
    recipe: BoxRecipe,
    method: str | None = None,
    gate_stores: Mapping[str, MapStore] | None = None,
) -> DerivedBoxes:
    """Run the procedure on every image of ``dataset`` that has maps in ``store``.

    With ``recipe.gate``, a (image, class) pair is kept only when this method's map passes the gate, and
    also every map of ``gate_stores`` (the thesis's "all methods agree" selection), if given. An image is
    *selected* when at least one of its classes was kept; detection scores are computed on those images.
    Each kept pair gives the boxes ``recipe.boxes`` draws: one (figure), one per component (attribute), or
    one per instance with ``recipe.instances``.
    """
    level = recipe.level
    classes = store.classes
    index = {c: i for i, c in enumerate(classes)}
    others = dict(gate_stores or {})
    other_classes = {m: {c: i for i, c in enumerate(s.classes)} for m, s in others.items()}
    counts = {"images": 0, "missing_maps": 0, "pairs": 0, "class_not_in_maps": 0, "gated_out": 0,
              "empty_foreground": 0}
    derived: list[DerivedBox] = []
    selected: list[str] = []
    for sample in progress(dataset.samples, f"deriving boxes ({method or store.directory.name})"):
        if not store.has(sample.id):
            counts["missing_maps"] += 1
            continue
        counts["images"] += 1
        image = None
        if recipe.segments is not None:
            try:
                image = load_image(sample.path)
            except IconolensError:
                counts["unreadable_images"] = counts.get("unreadable_images", 0) + 1
                continue
            width, height = image.size
        else:
            height, width = image_size_of(sample)
        raw, scores = store.read(sample.id)
        wanted = []
        for cls in sample.labels:
            if cls not in index:
                counts["class_not_in_maps"] += 1
            else:
                wanted.append(cls)
        if not wanted:
            continue
        maps = normalised_maps(raw[[index[c] for c in wanted]], (height, width))
        kept_any = False
        for cls, saliency in zip(wanted, maps):
            counts["pairs"] += 1
            if recipe.gate:
                truth = _truth(sample, cls, level, width, height)
                ok = passes_gate(saliency, truth, level, recipe.gate_minimum)
                for name, other in others.items():
                    if not ok:
                        break
                    if cls not in other_classes[name] or not other.has(sample.id):
                        ok = False
                        break
                    other_raw, _ = other.read(sample.id)
                    other_map = normalised_maps(other_raw[[other_classes[name][cls]]], (height, width))[0]
                    ok = passes_gate(other_map, truth, level, recipe.gate_minimum)
                if not ok:
                    counts["gated_out"] += 1
                    continue
            kept_any = True
            found = recipe.boxes(saliency, image)
            if not found:
                counts["empty_foreground"] += 1
            for box in found:
                derived.append(DerivedBox(sample.id, cls, float(box.x0), float(box.y0), float(box.x1),
                                          float(box.y1), box.mean_activation, float(scores[index[cls]]),
                                          box.peak_height))
        if kept_any:
            selected.append(sample.id)
    counts["boxes"] = len(derived)
    counts["selected_images"] = len(selected)
    return DerivedBoxes(method or store.directory.name, recipe, tuple(derived), tuple(selected), counts)


def merge_derived_boxes(parts: Sequence[DerivedBoxes]) -> DerivedBoxes:
    """The boxes of consecutive slices of a collection, as :func:`derive_boxes` would give on the whole of it."""
    if not parts:
        raise BadInputError("there are no derived boxes to merge")
    counts: dict[str, int] = {}
    for part in parts:
        for key, value in part.counts.items():
            counts[key] = counts.get(key, 0) + value
    return DerivedBoxes(parts[0].method, parts[0].recipe, tuple(b for p in parts for b in p.boxes),
                        tuple(i for p in parts for i in p.selected), counts)


def coco_detections(derived: DerivedBoxes, dataset: Dataset) -> list[dict[str, Any]]:
    """COCO result entries; image ids are 1-based positions in ``dataset`` and category ids 1-based
    positions in ``dataset.classes``, as in the COCO file ``iconolens.data.coco.write_coco`` writes."""
    image_id = {s.id: i for i, s in enumerate(dataset.samples, start=1)}
    category_id = {c: i for i, c in enumerate(dataset.classes, start=1)}
    out = []
    for box in derived.boxes:
        out.append({
            "image_id": image_id[box.sample_id],
            "category_id": category_id[box.label],
            "bbox": [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0],
            "score": round(box.score, 6),
            "sample_id": box.sample_id,
        })
    return out


def pseudo_ground_truth(derived: DerivedBoxes, dataset: Dataset) -> Dataset:
    """The selected images with derived boxes in place of expert ones: training data for a detector.

    Figure boxes are labelled with their class; attribute boxes, whose symbol is unknown, with
    ``"region - <class>"``.
    """
    by_sample: dict[str, list[Box]] = {}
    for box in derived.boxes:
        if derived.recipe.level == "figure":
            label = box.label
        else:
            label = f"{DERIVED_ATTRIBUTE} - {box.label}"
        by_sample.setdefault(box.sample_id, []).append(
            Box(box.x0, box.y0, box.x1, box.y1, label=label, level=derived.recipe.level)
        )
    samples = tuple(
        replace(s, boxes=tuple(by_sample[s.id]))
        for s in dataset.samples
        if s.id in by_sample
    )
    return Dataset(samples=samples, classes=dataset.classes, multi_label=dataset.multi_label, root=dataset.root)


def write_derived_boxes(derived: DerivedBoxes, dataset: Dataset, out_dir: str | Path) -> dict[str, Path]:
    """Write the detections (COCO results) and the pseudo-ground-truth collection (COCO dataset), each with a
    sibling ``*.annotations.json`` AnnotationPage of the same boxes for IIIF viewers.

    The pages are written first, so a COCO file on disk (what a resumed stage looks for) has its page.
    """
    from iconolens.data.coco import write_coco
    from iconolens.data.web_annotations import annotations_path, write_boxes_page

    out_dir = Path(out_dir)
    stem = f"{derived.method}_{derived.recipe.level}"
    detections_path, pseudo_path = out_dir / f"{stem}_detections.json", out_dir / f"{stem}_pseudo_coco.json"
    pseudo_set = pseudo_ground_truth(derived, dataset)
    by_sample: dict[str, list[DerivedBox]] = {}
    for box in derived.boxes:
        by_sample.setdefault(box.sample_id, []).append(box)
    what = f"{derived.method} {derived.recipe.level} boxes"
    pages = {
        "detections_annotations": write_boxes_page(annotations_path(detections_path), dataset, by_sample,
                                                   label=f"{what} derived from saliency maps"),
        "pseudo_coco_annotations": write_boxes_page(annotations_path(pseudo_path), pseudo_set,
                                                    {s.id: s.boxes for s in pseudo_set.samples},
                                                    label=f"{what} (pseudo ground truth)", with_scores=False),
    }
    detections = write_json_atomically(detections_path, coco_detections(derived, dataset))
    pseudo = write_coco(pseudo_set, pseudo_path)
    return {"detections": detections, "pseudo_coco": pseudo, **pages}
