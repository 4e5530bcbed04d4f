"""Where a detector goes wrong and what it looked at: false positives and missed objects with D-RISE maps.

Detections are matched to ground truth greedily by score (same class, IoU >= 0.5, each truth used once), as
in VOC/COCO evaluation. A detection left unmatched is a false positive, explained as it is; a truth box left
unmatched is a missed object, explained as a target box with a one-hot class vector (D-RISE needs no
detection to explain a box). The report is a JSON list, PNG overlays and an HTML page showing them; the raw
maps of each image (``maps/<image>.npy``, float16, one per item) and ``images.json`` (each image's file, size,
detections and expert boxes) let ``iconolens view`` open the report in the interactive viewer.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.ops import box_iou

from iconolens.atomic import (
    write_array_atomically,
    write_bytes_atomically,
    write_json_atomically,
    write_text_atomically,
)
from iconolens.data.images import load_image
from iconolens.data.records import Box, Dataset
from iconolens.detect.detections import Detector, targets_from_boxes
from iconolens.detect.evaluation import ScoredBox, image_tensor
from iconolens.errors import IconolensError
from iconolens.explain.drise import drise
from iconolens.report.overlays import heatmap_overlay
from iconolens.progress import progress


def match_detections(
    predictions: Sequence[ScoredBox], truth: Sequence[Box], iou_threshold: float = 0.5
) -> tuple[list[int], list[int]]:
    """Indices of unmatched predictions (false positives) and unmatched truth boxes (missed objects)."""
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i].score)
    used: set[int] = set()
    false_positives: list[int] = []
    if truth and predictions:
        iou = box_iou(torch.tensor([p.xyxy for p in predictions]), torch.tensor([t.xyxy for t in truth]))
    for i in order:
        best, best_iou = -1, iou_threshold
        for j, t in enumerate(truth):
            if j in used or t.label != predictions[i].label:
                continue
            value = float(iou[i, j])
            if value >= best_iou:
                best, best_iou = j, value
        if best < 0:
            false_positives.append(i)
        else:
            used.add(best)
    return false_positives, [j for j in range(len(truth)) if j not in used]


def overlay_png(image: Tensor, saliency: Tensor | np.ndarray, box: Sequence[float], alpha: float = 0.5) -> bytes:
    """The image with its min-max normalised map in the jet colours on top and the box outlined, as PNG bytes."""
    values = np.asarray(saliency, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    norm = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)
    painting = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    x0, y0, x1, y1 = (float(v) for v in box)
    picture = heatmap_overlay(painting, norm, derived_boxes=[Box(x0, y0, x1, y1, "target")], alpha=alpha, max_side=None)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Failure:
    """One false positive or missed object; ``box`` in original pixels, ``overlay`` relative to the report."""

    sample_id: str
    kind: str
    label: str
    box: tuple[float, float, float, float]
    score: float | None
    overlay: str
    masks_used: int
    note: str
    #: The image's raw maps (relative to the report) and this item's row in them.
    map_file: str = ""
    map_index: int = 0


def failure_report(
    detector: Detector,
    dataset: Dataset,
    predictions: Sequence[Sequence[ScoredBox]],
    out_dir: str | Path,
    min_score: float = 0.5,
    min_size: int = 320,
    max_size: int = 512,
    level: str = "figure",
    n_masks: int = 1000,
    batch_size: int = 16,
    seed: int = 0,
    tolerance: float | None = 0.01,
    window: int = 250,
    max_images: int | None = None,
) -> list[Failure]:
    """Explain every false positive (score >= ``min_score``) and missed object; write JSON, PNGs and HTML."""
    out_dir = Path(out_dir)
    failures: list[Failure] = []
    images: list[dict[str, object]] = []
    index = {c: i for i, c in enumerate(detector.classes)}
    done = 0
    for sample, found in progress(list(zip(dataset.samples, predictions)), "explaining failures"):
        if max_images is not None and done >= max_images:
            break
        found = [p for p in found if p.score >= min_score]
        truth = [b for b in sample.boxes if b.level == level and b.label in index]
        false_positives, missed = match_detections(found, truth)
        if not false_positives and not missed:
            continue
        try:
            image = load_image(sample.path)
        except IconolensError:
            continue
        done += 1
        pixels, scale = image_tensor(image, min_size, max_size)
        items = [("false positive", found[i].xyxy, found[i].label, found[i].score) for i in false_positives]
        items += [("missed", truth[j].xyxy, truth[j].label, None) for j in missed]
        boxes = [[v * scale for v in item[1]] for item in items]
        height, width = pixels.shape[1:]
        boxes = [[min(max(b[0], 0), width - 1), min(max(b[1], 0), height - 1), min(b[2], width), min(b[3], height)]
                 for b in boxes]
        targets = targets_from_boxes(boxes, [index[item[2]] for item in items], len(detector.classes))
        result = drise(detector, pixels, targets, n_masks=n_masks, batch_size=batch_size, seed=seed,
                       tolerance=tolerance, window=window)
        map_file = f"maps/{_safe(sample.id)}.npy"
        write_array_atomically(out_dir / map_file, result.maps.numpy().astype(np.float16))
        for k, (kind, box, label, score) in enumerate(items):
            name = f"{_safe(sample.id)}_{k}_{kind.replace(' ', '-')}.png"
            write_bytes_atomically(out_dir / "maps" / name, overlay_png(pixels, result.maps[k], boxes[k]))
            failures.append(Failure(sample.id, kind, label, tuple(float(v) for v in box), score,
                                    f"maps/{name}", result.masks_used, result.summary(), map_file, k))
        images.append({
            "id": sample.id, "file": str(sample.path), "width": image.size[0], "height": image.size[1],
            "split": sample.split, "labels": list(sample.labels),
            "detections": [[*p.xyxy, p.label, p.score] for p in found],
            "truth": [[*b.xyxy, b.label] for b in truth],
        })
    write_json_atomically(out_dir / "images.json", {"classes": list(detector.classes), "min_score": min_score,
                                                    "images": images})
    write_json_atomically(out_dir / "failures.json", [asdict(f) for f in failures])
    write_text_atomically(out_dir / "failures.html", _html(failures))
    return failures


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80]


def _html(failures: Sequence[Failure]) -> str:
    rows = []
    for f in failures:
        score = "" if f.score is None else f"{f.score:.3f}"
        rows.append(
            f"<figure><img src='{html.escape(f.overlay)}' alt=''><figcaption>{html.escape(f.kind)}: "
            f"{html.escape(f.label)} {score} in {html.escape(f.sample_id)} ({f.masks_used} masks)</figcaption></figure>"
        )
    body = "\n".join(rows) or "<p>No false positives or missed objects.</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Detector failures</title><style>"
        "figure{display:inline-block;margin:6px;max-width:340px}img{max-width:100%}</style></head><body>"
        f"<h1>False positives and missed objects</h1><p>{len(failures)} item(s); white box: the object, "
        f"colours: D-RISE saliency (red high).</p>\n{body}\n</body></html>\n"
    )
