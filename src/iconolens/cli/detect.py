"""`iconolens detect train|eval|explain`: detectors in paintings and their D-RISE explanations."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from iconolens.cli.console import CommandConsole
from iconolens.device import DEVICE_HELP
from iconolens.errors import BadInputError
from iconolens.ray_pool import ADDRESS_HELP, ENGINE_HELP, check_engine

console = CommandConsole(highlight=False, soft_wrap=True)
detect_app = typer.Typer(
    help="Object detectors in paintings: train Faster R-CNN on boxes (expert or derived from saliency maps), "
    "score it with COCO AP, and explain its detections with D-RISE.",
    no_args_is_help=True,
)

COCO_HELP = "COCO JSON collection (expert boxes, or the pseudo-ground-truth file `iconolens boxes` writes)."
COLLECTION_HELP = "Collection folder, file or IIIF manifest URL in any format iconolens reads (VOC/People-Art tree, COCO, IIIF, ...)."
RUN_HELP = "Run folder whose dataset.json holds the collection and its splits."


def _dataset(coco: Optional[Path], collection: Optional[str], run: Optional[Path], split: Optional[str]):
    given = [x for x in (coco, collection, run) if x is not None]
    if len(given) != 1:
        raise BadInputError("give exactly one of --coco, --collection or --run")
    if coco is not None:
        from iconolens.data.coco import read_coco

        dataset = read_coco(coco)
    elif collection is not None:
        from iconolens.data.collections import load_collection

        dataset = load_collection(collection)
    else:
        from iconolens.data.dataset_json import load_dataset_json
        from iconolens.run import RunDirectory

        path = RunDirectory(run).dataset_json
        if not path.is_file():
            raise BadInputError("no dataset.json in the run folder", run)
        dataset = load_dataset_json(path)
    if split is not None:
        if not any(s.split == split for s in dataset.samples):
            raise BadInputError(f"the collection has no images in the {split!r} split", given[0])
        dataset = dataset.subset(split)
    return dataset, given[0]


AUGMENT_HELP = (
    "Show each training painting with its brightness, contrast and saturation changed at random, sometimes in grey, "
    "and at 0.8 to 1.2 times the working size, so that the detector leans less on the palettes and sizes of the "
    "paintings it learns from."
)


def train(
    out: Path = typer.Option(..., "--out", help="Folder to write the detector to (weights.pt + detector.json)."),
    coco: Optional[Path] = typer.Option(None, "--coco", help=COCO_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help=COLLECTION_HELP),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    split: Optional[str] = typer.Option(None, "--split", help="Train only on this split (e.g. train); default all images."),
    boxes: Optional[Path] = typer.Option(
        None, "--boxes", help="COCO detections JSON (e.g. from `iconolens boxes`) replacing the collection's boxes."
    ),
    min_box_score: float = typer.Option(0.0, "--min-box-score", help="Ignore --boxes entries scoring below this."),
    level: str = typer.Option("figure", "--level", help="Which boxes to detect: figure or attribute."),
    iterations: int = typer.Option(500, "--iterations", min=1, help="Optimisation steps."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per step."),
    learning_rate: float = typer.Option(0.01, "--lr", help="SGD learning rate after warm-up."),
    min_size: int = typer.Option(320, "--min-size", min=32, help="Shorter image side seen by the detector, in pixels."),
    max_size: int = typer.Option(512, "--max-size", min=32, help="Longest image side seen by the detector, in pixels."),
    backbone: str = typer.Option(
        "mobilenet_v2_fpn", "--backbone",
        help="mobilenet_v2 or efficientnet_lite0 (one stride-32 feature map), or either with _fpn (feature pyramid).",
    ),
    frozen_blocks: int = typer.Option(4, "--frozen-blocks", min=0, help="Early trunk stages kept frozen."),
    negative_share: float = typer.Option(
        0.25, "--negative-share", min=0.0, max=0.99,
        help="Share of each batch taken from images without boxes (negatives); the rest have boxes.",
    ),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="ImageNet state dict of the trunk's classifier (default: the file shipped in a package)."
    ),
    augment: bool = typer.Option(False, "--augment/--no-augment", help=AUGMENT_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, image order and flips."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for PyTorch."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Train a Faster R-CNN (ImageNet-pretrained MobileNetV2 or EfficientNet-Lite0) on expert or pseudo boxes."""
    import torch

    from iconolens.detect.augmentation import PaintingAugmentation
    from iconolens.detect.checkpoint import save_detector
    from iconolens.detect.training import read_coco_detections, train_detector, with_pseudo_boxes

    torch.set_num_threads(threads)
    if level not in ("figure", "attribute"):
        raise BadInputError(f"--level must be figure or attribute, not {level!r}")
    dataset, _ = _dataset(coco, collection, run, split)
    if boxes is not None:
        dataset = with_pseudo_boxes(dataset, read_coco_detections(boxes), boxes, min_box_score)
    model, meta = train_detector(
        dataset, iterations=iterations, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
        min_size=min_size, max_size=max_size, backbone=backbone,
        backbone_weights=weights if weights is not None else True, frozen_blocks=frozen_blocks, level=level,
        negative_share=negative_share, device=device, augmentation=PaintingAugmentation() if augment else None,
    )
    save_detector(out, model, meta)
    console.print(f"detector for {', '.join(meta.classes)} trained on {meta.metrics['images']} images: {out}")
    _print_check(meta.metrics)


def _print_check(metrics: dict) -> None:
    """The held-out check of a training run: its recall, or the warning that the detector collapsed."""
    check = metrics["check"]
    if "warning" in metrics:
        CommandConsole(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]warning:[/] {metrics['warning']}")
    else:
        where = "held-out" if check["held_out"] else "training"
        console.print(f"check on {check['images']} {where} images: {check['detections']} boxes above "
                      f"{check['score_threshold']:g}, recall@0.5 {check['recall50']:.2f} of their {check['boxes']} boxes")


def evaluate(
    model: Optional[Path] = typer.Option(None, "--model", help="Detector folder written by `iconolens detect train`."),
    mtcnn: bool = typer.Option(False, "--mtcnn", help="Use the pretrained MTCNN face detector instead (class 'face')."),
    coco: Optional[Path] = typer.Option(None, "--coco", help=COCO_HELP),
    collection: Optional[str] = typer.Option(None, "--collection", help=COLLECTION_HELP),
    run: Optional[Path] = typer.Option(None, "--run", help=RUN_HELP),
    split: Optional[str] = typer.Option(None, "--split", help="Evaluate only this split (e.g. val)."),
    out: Optional[Path] = typer.Option(None, "--out", help=(
        "JSON file for the scores and detections; the detections also go to a IIIF AnnotationPage beside it "
        "(<name>.annotations.json)."
    )),
    failures: Optional[Path] = typer.Option(
        None, "--failures", help="Folder for a report of false positives and missed objects with D-RISE maps."
    ),
    failure_score: float = typer.Option(0.5, "--failure-score", help="Detections scoring at least this count as claims."),
    max_failure_images: Optional[int] = typer.Option(None, "--max-failure-images", min=1, help="Explain failures in at most this many images."),
    masks: int = typer.Option(1000, "--masks", min=1, help="D-RISE masks per image of the failure report."),
    size: int = typer.Option(320, "--size", min=32, help="Longest image side for the MTCNN detector."),
    seed: int = typer.Option(0, "--seed", help="Seed of the D-RISE masks."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for PyTorch."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    engine: str = typer.Option("inprocess", "--engine", help=ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    test_flip: bool = typer.Option(False, "--test-flip", help=(
        "Run the detector on every image and on its mirror image and merge the boxes (twice the detection time)."
    )),
    presence: Optional[Path] = typer.Option(None, "--presence", help=(
        "Run folder whose image classifier gates the detections: each score is multiplied by the classifier's "
        "probability that the image holds the detection's class (for detectors trained from image labels, "
        "which fire on paintings without their class)."
    )),
) -> None:
    """Score a detector with COCO AP at IoU 0.5 and 0.5:0.95 (pycocotools)."""
    import torch

    from iconolens.atomic import write_json_atomically
    from iconolens.detect.evaluation import detect_collection, detector_classes, score_detections
    from iconolens.detect.failures import failure_report
    from iconolens.detect.source import DetectorSource

    torch.set_num_threads(threads)
    check_engine(engine, address)
    source = DetectorSource(model, mtcnn, size, test_flip)
    detector, min_size, max_size = source.open(0.0, device)
    dataset, _ = _dataset(coco, collection, run, split)
    if engine == "ray":
        from iconolens.detect.ray_engine import detect_collection_on_ray

        predictions, _ = detect_collection_on_ray(source, dataset, device=device, address=address)
    else:
        predictions, _ = detect_collection(detector, dataset, min_size, max_size)
    if presence is not None:
        from iconolens.detect.presence import gate_by_presence, run_presence

        predictions = gate_by_presence(dataset, predictions, run_presence(presence, dataset))
        console.print(f"scores gated by the presence probabilities of the classifier of {presence}")
    scores = score_detections(dataset, predictions, detector_classes(detector))
    summary = scores.to_json()
    console.print(f"AP@0.5 {summary['AP50']}   AP@0.5:0.95 {summary['AP50:95']}   ({scores.images} images)")
    if out is not None:
        from iconolens.data.web_annotations import annotations_path, write_detections_page

        page = write_detections_page(annotations_path(out), dataset, predictions, label=f"detections ({out.stem})")
        write_json_atomically(out, {
            "scores": summary,
            "detections": {s.id: [[*d.xyxy, d.label, d.score] for d in found]
                           for s, found in zip(dataset.samples, predictions)},
        })
        console.print(f"wrote {out} and {page}")
    if failures is not None:
        items = failure_report(detector, dataset, predictions, failures, min_score=failure_score, min_size=min_size,
                               max_size=max_size, n_masks=masks, seed=seed, max_images=max_failure_images)
        console.print(f"{len(items)} false positives and missed objects explained: {failures / 'failures.html'}")


def _parse_box(text: str) -> tuple[list[float], str]:
    try:
        coords, label = text.split(":", 1)
        values = [float(v) for v in coords.split(",")]
    except ValueError:
        values, label = [], ""
    if len(values) != 4 or not label:
        raise BadInputError(f"--box must look like x0,y0,x1,y1:label, not {text!r}")
    return values, label


def explain(
    images: list[Path] = typer.Argument(..., help="Image files to explain."),
    out: Path = typer.Option(..., "--out", help=(
        "Folder for maps (maps.npy), overlays (PNG), explanation.json and the explained boxes as a IIIF "
        "AnnotationPage (explanation.annotations.json), one subfolder per image."
    )),
    model: Optional[Path] = typer.Option(None, "--model", help="Detector folder written by `iconolens detect train`."),
    mtcnn: bool = typer.Option(False, "--mtcnn", help="Explain the pretrained MTCNN face detector instead."),
    min_score: float = typer.Option(0.5, "--min-score", help="Explain detections scoring at least this."),
    box: list[str] = typer.Option(
        [], "--box", help="Explain this box instead of the detections, as x0,y0,x1,y1:label in original pixels "
        "(repeatable; e.g. a missed object)."
    ),
    masks: int = typer.Option(5000, "--masks", min=1, help="Most D-RISE masks per image (N)."),
    grid: int = typer.Option(16, "--grid", min=1, help="Mask grid cells per side (s)."),
    keep: float = typer.Option(0.5, "--keep", min=0.01, max=1.0, help="Probability a grid cell is kept (p)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Masked images per detector call."),
    tolerance: Optional[float] = typer.Option(
        None, "--tolerance", help="Stop once the maps change by less than this (relative) over a window of masks."
    ),
    window: int = typer.Option(250, "--window", min=1, help="Masks between two checks of the stopping rule."),
    faithfulness_steps: int = typer.Option(
        0, "--faithfulness-steps", min=0, help="Also compute deletion/insertion curves with this many steps (0: no)."
    ),
    size: int = typer.Option(320, "--size", min=32, help="Longest image side for the MTCNN detector."),
    seed: int = typer.Option(0, "--seed", help="Seed of the masks: the same seed gives the same maps."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for PyTorch."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    engine: str = typer.Option("inprocess", "--engine", help=ENGINE_HELP + " One image per call."),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
) -> None:
    """Explain every detection (or given boxes) of each image with D-RISE, all targets in one pass over the masks."""
    import torch

    from iconolens.detect.explanations import DriseSettings, explain_images
    from iconolens.detect.source import DetectorSource

    torch.set_num_threads(threads)
    check_engine(engine, address)
    source = DetectorSource(model, mtcnn, size)
    # Masked images are scored against every detection the model makes; only the targets obey --min-score.
    detector, min_size, max_size = source.open(0.0, device)
    given = [_parse_box(text) for text in box]
    for _, label in given:
        if label not in detector.classes:
            raise BadInputError(f"--box label {label!r} is not a class of the detector ({', '.join(detector.classes)})")
    settings = DriseSettings(n_masks=masks, grid=grid, keep=keep, batch_size=batch_size, seed=seed,
                             tolerance=tolerance, window=window, faithfulness_steps=faithfulness_steps)
    if engine == "ray":
        from iconolens.detect.ray_engine import explain_images_on_ray

        records = explain_images_on_ray(source, images, out, settings, given, min_score, device=device, address=address)
        for path, record in zip(images, records):
            console.print(f"{path.name}: {record['summary']}")
    else:
        explain_images(detector, images, out, settings, given=given, min_score=min_score, min_size=min_size,
                       max_size=max_size, on_image=lambda path, summary: console.print(f"{path.name}: {summary}"))


def weak(
    run: Path = typer.Option(..., "--run", help="Run folder whose dataset.json has image labels (boxes are not needed)."),
    split: str = typer.Option("train", "--split", help="Split the classifier's maps, the pseudo boxes and the detector use."),
    source: str = typer.Option(
        "one-box", "--source",
        help="Pseudo boxes of round 0: one-box (one box around each map's foreground; any class), faces (for "
        "classes that are human figures: one box per face a pretrained face detector finds, its figure cut out "
        "of the painting within the canon's proportions, the class from the labels and maps; paintings where no "
        "face is found wait for the detector (see --face-fallback); the best measured "
        "on People-Art's people), segments (boxes snapped to the painted objects the map points at, by "
        "GrabCut), instances (several per map: peaks grown into regions) or mil (multiple-instance learning "
        "over proposals).",
    ),
    method: str = typer.Option("cam", "--method", help="Saliency method whose maps give the boxes (all sources but mil)."),
    figure_cut: bool = typer.Option(
        True, "--figure-cut/--no-figure-cut",
        help="Source faces: cut each figure out of the painting by GrabCut around its face (else the canon's box).",
    ),
    keep_face_figures: bool = typer.Option(
        True, "--keep-face-figures/--relabel-alone",
        help="Source faces: every self-training round keeps round 0's face figures and adds the detections that "
        "overlap none of them (else the detector re-labels alone).",
    ),
    face_fallback: bool = typer.Option(
        False, "--face-fallback/--no-face-fallback",
        help="Source faces: one box around the map on each painting where no face is found (else such paintings "
        "stay out of training until a round's detector finds their figures, and only a class with no face "
        "anywhere keeps its map boxes).",
    ),
    map_size: int = typer.Option(448, "--map-size", min=32, help="Input size the maps are computed at (14 x 14 maps at 448 px)."),
    rounds: int = typer.Option(1, "--rounds", min=0, help="Self-training rounds: the last detector re-labels the images, the next learns."),
    iterations: int = typer.Option(600, "--iterations", min=1, help="Training steps of the first detector."),
    round_iterations: int = typer.Option(300, "--round-iterations", min=1, help="Training steps of each later detector (it starts from the previous one)."),
    relabel_score: float = typer.Option(
        0.5, "--relabel-score", min=0.0, max=1.0,
        help="Self-training: keep detections scoring at least this fraction of the image's best one.",
    ),
    drop_groups: bool = typer.Option(
        True, "--drop-groups/--keep-groups",
        help="Self-training: a detection around two or more distinct kept figures is a group, not a figure, and is "
        "not kept.",
    ),
    ignore_uncertain: bool = typer.Option(
        False, "--ignore-uncertain/--uncertain-as-background",
        help="Self-training: the detections re-labelling leaves out (labelled classes, overlapping no kept box) are "
        "learnt neither as figures nor as background (else as background, like any unboxed region).",
    ),
    test_flip: bool = typer.Option(
        True, "--test-flip/--no-test-flip",
        help="Re-labelling and evaluation run each detector on every painting and on its mirror image and merge "
        "the boxes (twice the detection time; evaluation then reports both).",
    ),
    augment: bool = typer.Option(True, "--augment/--no-augment", help=AUGMENT_HELP),
    backbone: str = typer.Option("mobilenet_v2_fpn", "--backbone", help="Detector backbone (see `iconolens detect train --help`)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per detector training step."),
    learning_rate: float = typer.Option(0.01, "--lr", help="Detector SGD learning rate after warm-up."),
    min_size: int = typer.Option(320, "--min-size", min=32, help="Shorter image side seen by the detector."),
    max_size: int = typer.Option(480, "--max-size", min=32, help="Longest image side seen by the detector."),
    negative_share: float = typer.Option(0.25, "--negative-share", min=0.0, max=0.99, help="Share of each batch taken from images without boxes."),
    evaluate_split: Optional[str] = typer.Option(
        None, "--evaluate", help="Also score every round's detector on this split's expert boxes (e.g. val)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every stage."),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads for PyTorch."),
    device: str = typer.Option("auto", "--device", help="Where maps and detectors run: " + DEVICE_HELP),
) -> None:
    """From image labels to a detector: classifier (if missing), maps, pseudo boxes, detector, self-training rounds.

    Every stage writes into RUN (RUN/weak/round-<r>/boxes and detector, RUN/weak/summary.json) and is skipped
    when its output exists, so an interrupted chain resumes; delete a stage's folder to redo it.
    """
    import torch

    from iconolens.detect.self_training import RelabelRule
    from iconolens.detect.weak import WeakDetectionPlan, weakly_supervised_detector

    torch.set_num_threads(threads)
    plan = WeakDetectionPlan(
        split=split, source=source, method=method, map_size=map_size, rounds=rounds, iterations=iterations,  # type: ignore[arg-type]
        round_iterations=round_iterations, relabel=RelabelRule(relative_score=relabel_score, drop_groups=drop_groups),
        backbone=backbone,
        batch_size=batch_size, learning_rate=learning_rate, min_size=min_size, max_size=max_size,
        negative_share=negative_share, seed=seed, evaluate_split=evaluate_split, device=device, figure_cut=figure_cut,
        keep_face_figures=keep_face_figures, ignore_uncertain=ignore_uncertain, face_fallback=face_fallback,
        test_flip=test_flip, augment=augment,
    )
    result = weakly_supervised_detector(run, plan, log=lambda message: console.print(message))
    for stage in result.stages:
        console.print(_stage_line(stage))
    console.print(f"detector: {result.detector_dir}")
    from iconolens.run import RunDirectory

    if (RunDirectory(run).model_dir / "meta.json").is_file():
        console.print(f"to score it with its detections gated by the classifier: iconolens detect eval --model "
                      f"{shlex.quote(str(result.detector_dir))} --run {shlex.quote(str(run))} --split SPLIT "
                      f"--presence {shlex.quote(str(run))}")


def _stage_line(stage: dict) -> str:
    """One printed line per stage of the weakly supervised chain."""
    name = stage["stage"]
    if stage.get("resumed") or stage.get("skipped"):
        return f"{name}: already done"
    if name.startswith("boxes"):
        line = f"{name}: {stage['boxes']} boxes on {stage['images_with_boxes']} images"
        if stage.get("scores"):
            sc = stage["scores"]
            line += f" (against the expert boxes: mAP@0.5 {sc.get('map50')}, recall@0.5 {sc.get('recall50')})"
        return line
    if name.startswith("detector"):
        if stage.get("warning"):
            return f"{name}: warning: {stage['warning']}"
        check = stage["check"]
        return f"{name}: {check['detections']} boxes on {check['images']} held-out images, recall@0.5 {check['recall50']}"
    if name.startswith("evaluate"):
        line = f"{name}: AP@0.5 {stage['AP50']:.3f}, AP@0.5:0.95 {stage['AP50:95']:.3f} on {stage['images']} images"
        if stage.get("presence_gated"):
            gated = stage["presence_gated"]
            line += (f"; gated by the classifier's presence: AP@0.5 {gated['AP50']:.3f}, "
                     f"AP@0.5:0.95 {gated['AP50:95']:.3f}")
        if stage.get("test_flip"):
            flipped = stage["test_flip"]
            line += f"; with mirror images: AP@0.5 {flipped['AP50']:.3f}, AP@0.5:0.95 {flipped['AP50:95']:.3f}"
        return line
    return f"{name}: done in {stage.get('seconds', 0):.0f} s"


def register(app: typer.Typer) -> None:
    """Add `iconolens detect train|eval|explain`."""
    detect_app.command("train", help="Train a Faster R-CNN on a collection's boxes or on pseudo boxes.")(train)
    detect_app.command("eval", help="COCO AP@0.5 and AP@0.5:0.95 of a detector; optional failure report.")(evaluate)
    detect_app.command("explain", help="D-RISE saliency maps for the detections of images.")(explain)
    detect_app.command("weak", help="From image labels to a detector: maps, pseudo boxes, detector, self-training.")(weak)
    app.add_typer(detect_app, name="detect")
