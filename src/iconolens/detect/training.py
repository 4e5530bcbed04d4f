"""Training the built-in Faster R-CNN on a collection's boxes (ground truth or pseudo boxes derived from maps).

Images are decoded once, shrunk to the detector's working size (shorter side ``min_size``, longer side at most
``max_size``, as the model's own transform would) and kept as 8-bit tensors, so an iteration costs only the
network. Images without boxes of the trained classes are kept as negatives, but each batch holds a fixed share
of them (``negative_share``): pseudo boxes come for the few images a weak labeller trusts, and batches drawn
uniformly from a collection that is mostly negatives teach the box head little but "background", until it
stops detecting anything.

Pseudo boxes also name only some of an image's objects: the people a weak labeller missed stand in the same
painting as the ones it boxed. Trained as usual, the detector is taught that those people are background, in
every positive image, every iteration. With ``complete_boxes=False`` the background samples of both stages
(the region proposal network's anchors and the box head's proposals) are drawn only from images without boxes,
where the image labels say there is nothing to find; images with boxes teach only what their boxes are.
Measured on People-Art's face-seeded pseudo boxes (docs/benchmarks.md) it does worse: without background from
the paintings with people the detector fires on far more of their painted surroundings, so the default stays.
A narrower remedy is ``uncertain`` boxes: regions that may or may not hold an object (a previous detector's
detections that re-labelling did not keep). An anchor or proposal overlapping one of them as much as it would
need to overlap a true box not to be background is drawn neither as background nor as an object.

Paintings differ from one collection to the next in palette and in the size of their figures; ``augmentation``
shows each training image changed in both (:mod:`iconolens.detect.augmentation`).

A training run ends with a check that it learnt something: a slice of the images with boxes is held out of
training, and the trained model is run on it. A detector that scores no box above its threshold there has
collapsed to background; :class:`TrainingCheck` says so in one sentence with what to change. Everything random
(new layers' initial weights, order, flips, the held-out slice) follows ``seed``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.ops import box_iou

from iconolens.data.images import load_image
from iconolens.data.records import Box, Dataset, Sample
from iconolens.detect.augmentation import PaintingAugmentation
from iconolens.detect.checkpoint import DetectorMeta
from iconolens.detect.faster_rcnn import DEFAULT_BACKBONE, build_faster_rcnn, check_backbone, freeze_backbone_blocks
from iconolens.device import resolve_device
from iconolens.errors import BadAnnotationError, BadInputError, IconolensError
from iconolens.progress import progress


@dataclass(frozen=True)
class TrainingImage:
    """One image at working size: pixels (3, h, w) uint8, boxes (K, 4) in working pixels, labels 1..C, and the
    uncertain regions (U, 4) in working pixels that are sampled neither as objects nor as background."""

    sample_id: str
    pixels: Tensor
    boxes: Tensor
    labels: Tensor
    scale: float
    uncertain: Tensor = field(default_factory=lambda: torch.zeros(0, 4))


@dataclass(frozen=True)
class TrainingCheck:
    """What the trained detector finds on images with boxes that it was not trained on.

    ``held_out`` is False when the collection had too few images with boxes to spare any, and the check ran
    on training images instead (a weaker check: a model that finds nothing there has surely collapsed).
    """

    images: int
    boxes: int
    detections: int
    recall50: float
    score_threshold: float
    held_out: bool

    @property
    def collapsed(self) -> bool:
        return self.images > 0 and self.detections == 0

    def warning(self) -> str | None:
        """One sentence for a person when the detector finds nothing, else None."""
        if not self.collapsed:
            return None
        where = "held-out training images" if self.held_out else "training images"
        return (f"the detector scores no box above {self.score_threshold:g} on {self.images} {where} with boxes: it "
                "has collapsed to background; train with more iterations or a lower --lr, keep more images with "
                "boxes in each batch (--negative-share), or use the mobilenet_v2_fpn backbone")

    def to_json(self) -> dict:
        return {"images": self.images, "boxes": self.boxes, "detections": self.detections,
                "recall50": round(self.recall50, 4), "score_threshold": self.score_threshold,
                "held_out": self.held_out, "collapsed": self.collapsed}


class BalancedBatches:
    """Batches with ``round(batch_size * negative_share)`` images without boxes (when there are any), the rest
    with boxes; each group is drawn as successive seeded permutations, so every image is seen equally often."""

    def __init__(self, has_boxes: list[bool], batch_size: int, negative_share: float, rng: np.random.Generator):
        self.groups = [[i for i, b in enumerate(has_boxes) if b], [i for i, b in enumerate(has_boxes) if not b]]
        negatives = round(batch_size * negative_share) if self.groups[1] else 0
        if not self.groups[0]:
            negatives = batch_size
        self.counts = [batch_size - negatives, negatives]
        self.queues: list[list[int]] = [[], []]
        self.rng = rng

    def next(self) -> list[int]:
        batch: list[int] = []
        for group, count, queue in zip(self.groups, self.counts, self.queues):
            while len(queue) < count:
                queue += [group[i] for i in self.rng.permutation(len(group))]
            batch += queue[:count]
            del queue[:count]
        return batch


class BackgroundFromEmptyImages:
    """A foreground/background sampler that keeps its wrapped sampler's choice, but draws no background from an
    image with a box (one whose labels hold a positive entry): its unboxed regions may hold missed objects."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def __call__(self, labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        positives, negatives = self.sampler(labels)
        return positives, [torch.zeros_like(n) if bool((m >= 1).any()) else n for m, n in zip(labels, negatives)]


class UncertainRegionsIgnored:
    """While active, anchors (region proposal network) and proposals (box head) that would be background but
    overlap one of their image's ``targets[i]["uncertain"]`` boxes at least as much as the stage's background
    threshold are ignored (label -1) instead. The model's own methods are restored on exit."""

    def __init__(self, model: FasterRCNN) -> None:
        self.model = model
        self.current: list[Tensor | None] = []

    @staticmethod
    def _ignore(labels: list[Tensor], boxes: list[Tensor], uncertain: list[Tensor | None], threshold: float) -> None:
        for label, candidates, regions in zip(labels, boxes, uncertain):
            if regions is None or not len(regions) or not len(candidates):
                continue
            near = box_iou(regions.to(candidates), candidates).max(dim=0).values >= threshold
            label[(label == 0) & near] = -1

    def __enter__(self) -> "UncertainRegionsIgnored":
        rpn, heads = self.model.rpn, self.model.roi_heads
        assign_anchors, select, assign_proposals = (rpn.assign_targets_to_anchors, heads.select_training_samples,
                                                    heads.assign_targets_to_proposals)

        def anchors(anchor_boxes, targets):
            labels, matched = assign_anchors(anchor_boxes, targets)
            self._ignore(labels, anchor_boxes, [t.get("uncertain") for t in targets],
                         rpn.proposal_matcher.low_threshold)
            return labels, matched

        def samples(proposals, targets):
            self.current = [t.get("uncertain") for t in targets] if targets is not None else []
            return select(proposals, targets)

        def proposals(proposal_boxes, gt_boxes, gt_labels):
            matched, labels = assign_proposals(proposal_boxes, gt_boxes, gt_labels)
            self._ignore(labels, proposal_boxes, self.current, heads.proposal_matcher.low_threshold)
            return matched, labels

        rpn.assign_targets_to_anchors = anchors
        heads.select_training_samples = samples
        heads.assign_targets_to_proposals = proposals
        return self

    def __exit__(self, *exc) -> None:
        for module, name in ((self.model.rpn, "assign_targets_to_anchors"),
                             (self.model.roi_heads, "select_training_samples"),
                             (self.model.roi_heads, "assign_targets_to_proposals")):
            module.__dict__.pop(name, None)


def held_out_slice(images: list["TrainingImage"], rng: np.random.Generator, fraction: float = 0.05,
                   most: int = 20, least_left: int = 20) -> tuple[list["TrainingImage"], list["TrainingImage"]]:
    """(training images, held-out images with boxes): ``fraction`` of the images with boxes, at most ``most``,
    and none when fewer than ``least_left`` would remain to train on."""
    with_boxes = [i for i, t in enumerate(images) if len(t.boxes)]
    count = min(most, max(1, round(fraction * len(with_boxes))))
    if len(with_boxes) - count < least_left:
        return images, []
    chosen = set(rng.choice(with_boxes, size=count, replace=False).tolist())
    return [t for i, t in enumerate(images) if i not in chosen], [t for i, t in enumerate(images) if i in chosen]


def check_detector(model: FasterRCNN, images: list["TrainingImage"], score_threshold: float,
                   held_out: bool) -> TrainingCheck:
    """Run ``model`` (eval mode) on ``images`` and count its boxes above ``score_threshold`` and the share of
    their boxes it finds at IoU >= 0.5."""
    found = matched = boxes = 0
    with torch.inference_mode():
        for item in images:
            out = model([item.pixels.float() / 255.0])[0]
            keep = out["scores"] >= score_threshold
            found += int(keep.sum())
            boxes += len(item.boxes)
            if keep.any() and len(item.boxes):
                matched += int((box_iou(item.boxes, out["boxes"][keep]).max(dim=1).values >= 0.5).sum())
    return TrainingCheck(len(images), boxes, found, matched / boxes if boxes else float("nan"), score_threshold,
                         held_out)


def detection_classes(dataset: Dataset, level: str = "figure") -> tuple[str, ...]:
    """The labels of ``level`` boxes in the collection, in the collection's class order, then by name."""
    present = {b.label for s in dataset.samples for b in s.boxes if b.level == level}
    ordered = [c for c in dataset.classes if c in present]
    return tuple(ordered + sorted(present - set(ordered)))


def working_scale(width: int, height: int, min_size: int, max_size: int) -> float:
    """The factor Faster R-CNN's transform would resize an image by: shorter side to min_size, longer capped."""
    return min(min_size / min(width, height), max_size / max(width, height))


def prepare_image(
    sample: Sample, classes: tuple[str, ...], min_size: int, max_size: int, level: str = "figure",
    uncertain: Sequence[Sequence[float]] = (),
) -> TrainingImage:
    image = load_image(sample.path)
    scale = working_scale(image.width, image.height, min_size, max_size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    index = {c: i + 1 for i, c in enumerate(classes)}
    boxes, labels = [], []
    for box in sample.boxes:
        if box.level != level or box.label not in index:
            continue
        x0, y0, x1, y1 = (v * scale for v in box.xyxy)
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(size[0]), x1), min(float(size[1]), y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        boxes.append((x0, y0, x1, y1))
        labels.append(index[box.label])
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
    return TrainingImage(
        sample.id,
        pixels,
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
        scale,
        torch.tensor([list(b) for b in uncertain], dtype=torch.float32).reshape(-1, 4) * scale,
    )


def train_detector(
    dataset: Dataset,
    classes: tuple[str, ...] | None = None,
    iterations: int = 500,
    batch_size: int = 4,
    learning_rate: float = 0.01,
    seed: int = 0,
    min_size: int = 320,
    max_size: int = 512,
    backbone: str = DEFAULT_BACKBONE,
    backbone_weights: Path | str | bool | None = True,
    frozen_blocks: int = 4,
    level: str = "figure",
    negative_share: float = 0.25,
    max_grad_norm: float | None = 10.0,
    complete_boxes: bool = True,
    uncertain: Mapping[str, Sequence[Sequence[float]]] | None = None,
    initial_state: dict[str, Tensor] | None = None,
    log: Callable[[int, float], None] | None = None,
    device: str = "cpu",
    augmentation: PaintingAugmentation | None = None,
) -> tuple[FasterRCNN, DetectorMeta]:
    """Train a Faster R-CNN on the ``level`` boxes of ``dataset``; returns the model (eval mode) and its metadata.

    SGD with momentum 0.9, weight decay 1e-4, linear warm-up over the first tenth of the iterations and a tenfold
    drop at three quarters. ``negative_share``: the share of each batch taken from images without boxes.
    ``max_grad_norm``: gradients are clipped to this norm (None: not clipped); without it the EfficientNet-Lite0
    pyramid diverges to NaN within a hundred steps at the default learning rate. A step whose loss is not finite
    is skipped and counted (``meta.metrics["skipped_steps"]``). ``complete_boxes``: whether each image's boxes
    name every object of the trained classes in it (expert boxes do); False learns background only from images
    without boxes (module docstring: measured worse on People-Art's pseudo boxes, hence off by default).
    ``uncertain``: sample id -> boxes (xyxy, original pixels) that may or may not be objects; anchors and
    proposals on them are sampled neither as objects nor as background (:class:`UncertainRegionsIgnored`).
    ``initial_state``: a state dict of a detector of the same classes and backbone to start from (a previous
    self-training round) instead of the ImageNet trunk and fresh layers. ``log(iteration, loss)`` is called after
    every iteration. ``meta.metrics["check"]`` holds the :class:`TrainingCheck` and ``meta.metrics["warning"]``
    its sentence when the detector collapsed. ``device`` (``auto``, ``cpu``, ``cuda[:N]``, ``mps``) is where the
    network trains; the returned model is on the CPU. ``augmentation``: each training image is changed at random
    in colour and scale (:class:`~iconolens.detect.augmentation.PaintingAugmentation`); None: flipped only.
    """
    classes = tuple(classes) if classes is not None else detection_classes(dataset, level)
    if not classes:
        raise BadAnnotationError("the collection has no boxes to train a detector on", dataset.root)
    if iterations < 1 or batch_size < 1:
        raise BadInputError("training needs at least one iteration and a batch size of at least 1")
    if not 0.0 <= negative_share < 1.0:
        raise BadInputError(f"the share of images without boxes per batch must be in [0, 1), got {negative_share}")
    check_backbone(backbone)  # before the images are read
    where = resolve_device(device)
    images: list[TrainingImage] = []
    skipped = 0
    for sample in progress(dataset.samples, "loading images"):
        try:
            images.append(prepare_image(sample, classes, min_size, max_size, level,
                                        (uncertain or {}).get(sample.id, ())))
        except IconolensError:
            skipped += 1
    if not any(len(t.boxes) for t in images):
        raise BadAnnotationError(f"no readable image has a box of the classes {', '.join(classes)}", dataset.root)
    if not complete_boxes and all(len(t.boxes) for t in images):
        raise BadAnnotationError("every image has boxes, so with incomplete boxes there is no image to learn "
                                 "background from; add images without the classes or treat the boxes as complete",
                                 dataset.root)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images, held = held_out_slice(images, rng)
    model = build_faster_rcnn(len(classes), backbone, backbone_weights=backbone_weights and initial_state is None,
                              min_size=min_size, max_size=max_size)
    if initial_state is not None:
        try:
            model.load_state_dict(initial_state)
        except RuntimeError as exc:
            raise BadInputError(f"the starting detector does not fit a {len(classes)}-class {backbone} detector "
                                f"({str(exc).splitlines()[0]})") from None
    freeze_backbone_blocks(model, frozen_blocks)
    samplers = (model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler)
    if not complete_boxes:
        model.rpn.fg_bg_sampler = BackgroundFromEmptyImages(samplers[0])
        model.roi_heads.fg_bg_sampler = BackgroundFromEmptyImages(samplers[1])
    model.to(where)
    ignoring = (UncertainRegionsIgnored(model) if any(len(t.uncertain) for t in images + held)
                else contextlib.nullcontext())
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(parameters, lr=learning_rate, momentum=0.9, weight_decay=1e-4)
    warmup = max(1, iterations // 10)

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup)
        return ramp * (0.1 if step >= math.ceil(0.75 * iterations) else 1.0)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    if augmentation is not None:
        model.transform.min_size, model.transform.max_size = augmentation.sizes(min_size, max_size)
    skipped_steps = 0
    model.train()
    batches = BalancedBatches([len(t.boxes) > 0 for t in images], batch_size, negative_share, rng)
    with ignoring:  # patched once for the whole loop, and only when there is something to ignore
        for step in progress(range(iterations), "training detector"):
            chosen = batches.next()
            inputs, targets = [], []
            for i in chosen:
                item = images[i]
                pixels = item.pixels.float() / 255.0
                boxes, regions = item.boxes.clone(), item.uncertain.clone()
                if rng.random() < 0.5:
                    pixels = pixels.flip(-1)
                    width = pixels.shape[-1]
                    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
                    regions[:, [0, 2]] = width - regions[:, [2, 0]]
                if augmentation is not None:
                    pixels = augmentation.colours(pixels, rng)
                inputs.append(pixels.to(where))
                targets.append({"boxes": boxes.to(where), "labels": item.labels.to(where),
                                "uncertain": regions.to(where)})
            losses = model(inputs, targets)
            loss = sum(losses.values())
            optimiser.zero_grad()
            if torch.isfinite(loss):
                loss.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
                optimiser.step()
            else:
                skipped_steps += 1
            schedule.step()
            if log is not None:
                log(step, float(loss.detach()))
    model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler = samplers
    model.transform.min_size, model.transform.max_size = (min_size,), max_size
    model.eval()
    model.to("cpu")
    check = check_detector(model, held or [t for t in images if len(t.boxes)][:20], model.roi_heads.score_thresh,
                           held_out=bool(held))
    metrics = {"iterations": iterations, "seed": seed, "images": len(images) + len(held), "held_out": len(held),
               "unreadable": skipped, "negative_share": negative_share, "max_grad_norm": max_grad_norm,
               "complete_boxes": complete_boxes,
               "uncertain_boxes": sum(len(t.uncertain) for t in images) + sum(len(t.uncertain) for t in held),
               "skipped_steps": skipped_steps, "check": check.to_json(),
               "augmentation": augmentation.to_json() if augmentation is not None else None}
    if skipped_steps > 0.05 * iterations:
        metrics["warning"] = (f"training diverged: the loss was not finite in {skipped_steps} of {iterations} steps; "
                              "train with a lower --lr or keep gradient clipping on")
    elif check.warning():
        metrics["warning"] = check.warning()
    return model, DetectorMeta(classes, backbone, min_size, max_size, metrics)


def read_coco_detections(path: str | Path) -> list[dict]:
    """A COCO detections (results) file: a list of ``{image_id, category_id, bbox, score}``."""
    path = Path(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInputError(f"cannot read the file ({exc.strerror})", path) from None
    except ValueError:
        raise BadAnnotationError("not a JSON file", path) from None
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise BadAnnotationError("expected a list of COCO detections", path)
    for entry in data:
        if not isinstance(entry, dict) or "image_id" not in entry or "bbox" not in entry:
            raise BadAnnotationError("every detection needs an image_id and a bbox", path)
        bbox = entry["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise BadAnnotationError(f"detection of image {entry['image_id']} has a malformed bbox {bbox!r}", path)
    return data


def boxed_or_negative(dataset: Dataset, level: str = "figure") -> Dataset:
    """``dataset`` without the images labelled with a class that has boxes elsewhere but none in them: pseudo
    boxes that left an image out say nothing of where its objects are, and it must not be learnt as background."""
    boxed = {b.label for s in dataset.samples for b in s.boxes if b.level == level}
    kept = tuple(s for s in dataset.samples
                 if all(any(b.label == label and b.level == level for b in s.boxes)
                        for label in s.labels if label in boxed))
    return dataset.with_samples(kept)


def with_pseudo_boxes(
    dataset: Dataset, detections: list[dict], path: str | Path = "", min_score: float = 0.0,
    category_names: dict[int, str] | None = None,
) -> Dataset:
    """``dataset`` with its boxes replaced by COCO detections (e.g. boxes derived from saliency maps).

    A detection's image is the sample named by its ``sample_id`` (as ``iconolens boxes`` writes), else the sample
    whose id, file name or stem equals ``str(image_id)``, else the ``image_id``-th sample (1-based); its
    class is ``category_name`` when present, else ``category_names[category_id]``, else the ``category_id``-th
    class of the collection (1-based, as COCO files written from a collection number them).
    Detections scoring below ``min_score`` are dropped; images with none become negatives.
    """
    by_key: dict[str, Sample] = {}
    for sample in dataset.samples:
        for key in (sample.id, Path(sample.path).name, Path(sample.path).stem):
            by_key.setdefault(str(key), sample)
    boxes: dict[str, list[Box]] = {s.id: [] for s in dataset.samples}
    for entry in detections:
        sample = by_key.get(str(entry.get("sample_id", entry["image_id"])))
        if sample is None and isinstance(entry["image_id"], int) and 1 <= entry["image_id"] <= len(dataset):
            sample = dataset.samples[entry["image_id"] - 1]
        if sample is None:
            raise BadAnnotationError(f"detection for image {entry['image_id']!r}, which is not in the collection", path)
        if float(entry.get("score", 1.0)) < min_score:
            continue
        if "category_name" in entry:
            label = str(entry["category_name"])
        else:
            cid = int(entry.get("category_id", 1))
            if category_names is not None and cid in category_names:
                label = category_names[cid]
            elif 1 <= cid <= len(dataset.classes):
                label = dataset.classes[cid - 1]
            else:
                raise BadAnnotationError(f"category_id {cid} names no class of the collection", path)
        x, y, w, h = (float(v) for v in entry["bbox"])
        boxes[sample.id].append(Box(x, y, x + w, y + h, label, "figure"))
    return dataset.with_samples(tuple(replace(s, boxes=tuple(boxes[s.id])) for s in dataset.samples))
