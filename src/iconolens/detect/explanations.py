"""D-RISE explanations of a detector on image files, written one folder per image (``iconolens detect explain``).

Each image's folder holds the raw maps (``maps.npy``, float16, one per target), an overlay per target, the
targets with their pointing game (and deletion/insertion areas when asked) in ``explanation.json``, and the
explained boxes as a IIIF AnnotationPage. With several targets in all, the average map around the explained
boxes (Bengamra et al.'s summary of what a detector looks at) is written beside the folders.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iconolens.atomic import write_array_atomically, write_bytes_atomically, write_json_atomically
from iconolens.data.images import load_image
from iconolens.data.web_annotations import write_explanation_page
from iconolens.detect.detections import Detector, targets_from_boxes
from iconolens.detect.evaluation import image_tensor
from iconolens.detect.failures import overlay_png
from iconolens.detect.measures import detection_perturbation_curves, mean_of_crops, pointing_game, saliency_crop
from iconolens.explain.drise import drise

#: A box given to explain instead of the detections: ``([x0, y0, x1, y1] in original pixels, class)``.
GivenBox = tuple[Sequence[float], str]


@dataclass(frozen=True)
class DriseSettings:
    """How the masks are drawn and when to stop; see :func:`iconolens.explain.drise.drise`."""

    n_masks: int = 5000
    grid: int = 16
    keep: float = 0.5
    batch_size: int = 16
    seed: int = 0
    tolerance: float | None = None
    window: int = 250
    faithfulness_steps: int = 0


def explain_image(
    detector: Detector,
    path: Path,
    out: Path,
    settings: DriseSettings = DriseSettings(),
    given: Sequence[GivenBox] = (),
    min_score: float = 0.5,
    min_size: int = 320,
    max_size: int = 320,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Explain one image's detections scoring at least ``min_score`` (or the ``given`` boxes) with D-RISE, all
    targets in one pass over the masks, into ``out/<stem>``; return its ``explanation.json`` content and each
    target's map cropped to its box (for the average)."""
    index = {c: i for i, c in enumerate(detector.classes)}
    image = load_image(path)
    pixels, scale = image_tensor(image, min_size, max_size)
    if not given:
        found = detector(pixels[None])[0]
        targets = found.select(found.scores >= min_score)
    else:
        targets = targets_from_boxes([[v * scale for v in b] for b, _ in given], [index[c] for _, c in given],
                                     len(detector.classes))
    result = drise(detector, pixels, targets, n_masks=settings.n_masks, grid=settings.grid, keep=settings.keep,
                   batch_size=settings.batch_size, seed=settings.seed, tolerance=settings.tolerance,
                   window=settings.window)
    folder = out / path.stem
    write_array_atomically(folder / "maps.npy", result.maps.numpy().astype(np.float16))
    entries, crops = [], []
    for k in range(len(result.targets)):
        target = result.targets.select([k])
        working_box = target.boxes[0].tolist()
        entry: dict[str, Any] = {
            "box": [v / scale for v in working_box],
            "label": detector.classes[int(target.labels[0])],
            "score": None if given else float(target.scores[0]),
            "pointing_game": pointing_game(result.maps[k], working_box),
            "overlay": f"target_{k}.png",
        }
        if settings.faithfulness_steps:
            curves = detection_perturbation_curves(detector, pixels, result.maps[k], target,
                                                   steps=settings.faithfulness_steps, batch_size=settings.batch_size)
            entry["deletion_auc"], entry["insertion_auc"] = curves.deletion_auc, curves.insertion_auc
        write_bytes_atomically(folder / entry["overlay"], overlay_png(pixels, result.maps[k], working_box))
        crops.append(saliency_crop(result.maps[k], working_box))
        entries.append(entry)
    write_explanation_page(folder / "explanation.annotations.json", path, image.size, entries)
    record = {
        "image": str(path), "working_scale": scale, "map_size": list(pixels.shape[1:]),
        "masks_used": result.masks_used, "converged": result.converged,
        "masks_without_detections": result.masks_without_detections, "summary": result.summary(),
        "targets": entries,
    }
    write_json_atomically(folder / "explanation.json", record)
    return record, crops


def write_average_saliency(out: Path, crops: Sequence[np.ndarray]) -> None:
    """With several targets in all, the average of their cropped maps as a PNG and JSON beside the folders."""
    if len(crops) < 2:
        return
    from PIL import Image

    average = mean_of_crops(crops)
    picture = Image.fromarray((average * 255).round().astype(np.uint8)).resize((128, 128))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_bytes_atomically(out / "average_saliency.png", buffer.getvalue())
    write_json_atomically(out / "average_saliency.json", {"targets": len(crops), "map": average.tolist()})


def explain_images(
    detector: Detector,
    images: Sequence[Path],
    out: Path,
    settings: DriseSettings = DriseSettings(),
    given: Sequence[GivenBox] = (),
    min_score: float = 0.5,
    min_size: int = 320,
    max_size: int = 320,
    on_image: Callable[[Path, str], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`explain_image` for each image, then the average map; return each image's ``explanation.json``."""
    written, crops = [], []
    for path in images:
        record, image_crops = explain_image(detector, path, out, settings, given, min_score, min_size, max_size)
        written.append(record)
        crops += image_crops
        if on_image is not None:
            on_image(path, record["summary"])
    write_average_saliency(out, crops)
    return written
