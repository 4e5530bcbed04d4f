"""The weakly supervised detection chain: from image labels alone to a detector that finds every figure.

Each stage writes into the run directory and is skipped when its output is already there, so an interrupted
chain resumes where it stopped, and any stage can be re-run by deleting its folder:

    RUN/model/                    classifier (trained off-the-shelf when missing)
    RUN/maps/<method>/            its saliency maps of the training images, at ``map_size``
    RUN/weak/round-0/boxes/       pseudo boxes (COCO detections and a pseudo-ground-truth COCO file): one box
                                  around each map's foreground, boxes snapped to the painted objects the map
                                  points at, several instances per map, multiple-instance learning over
                                  proposals, or figures around the faces a face detector finds
    RUN/weak/round-0/anchors/     (faces) the face figures alone, which every self-training round keeps
    RUN/weak/round-0/detector/    a Faster R-CNN trained on them
    RUN/weak/round-<r>/           self-training: detector r-1 re-labels the training images, detector r learns
                                  (``uncertain/``: its detections left out, which detector r may ignore)
    RUN/weak/summary.json         per stage: wall time, box counts, the held-out training check, and, where the
                                  run has expert boxes, the scores of the pseudo boxes and of the detector (alone,
                                  and with its scores gated by the classifier's presence probabilities; each
                                  also with the mirror images, the chain's default for re-labelling too)

(``weak`` is the plan's ``folder``, so that chains with other choices can share one run's classifier and maps.)

Expert boxes, when a collection has them, are only ever read to *score* a stage, never to make one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from iconolens.atomic import write_json_atomically
from iconolens.data.dataset_json import load_dataset_json
from iconolens.data.records import Dataset
from iconolens.detect.augmentation import PaintingAugmentation
from iconolens.detect.checkpoint import load_detector, save_detector
from iconolens.detect.evaluation import coco_average_precision, detect_collection, gathered
from iconolens.detect.faster_rcnn import DEFAULT_BACKBONE, check_backbone
from iconolens.detect.mirrored import MirroredViews, detect_both_ways
from iconolens.detect.presence import Presence, gate_by_presence, run_presence
from iconolens.detect.self_training import RelabelRule, relabel
from iconolens.detect.training import boxed_or_negative, read_coco_detections, train_detector, with_pseudo_boxes
from iconolens.device import resolve_device
from iconolens.errors import BadInputError
from iconolens.evaluate.boxes import BoxRecipe, DerivedBox, DerivedBoxes, derive_boxes, write_derived_boxes
from iconolens.evaluate.detection import evaluate_derived_boxes
from iconolens.evaluate.segments import SegmentSeeds
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory

BoxSource = Literal["one-box", "instances", "segments", "mil", "faces"]
BOX_SOURCES: tuple[str, ...] = ("one-box", "instances", "segments", "mil", "faces")


@dataclass(frozen=True)
class WeakDetectionPlan:
    """Every choice of the chain. Defaults are the ones measured on People-Art in docs/benchmarks.md."""

    split: str = "train"
    source: BoxSource = "one-box"
    # classifier, trained only when the run has none
    classifier_backbone: str = "mobilenet_v2"
    classifier_image_size: int = 224
    classifier_epochs: int = 10
    # maps
    method: str = "cam"
    map_size: int = 448
    # pseudo boxes from maps, for the instances source
    recipe: BoxRecipe = field(default_factory=lambda: BoxRecipe(level="figure", gate=False, instances=True))
    # the faces source: cut each face's figure out of the painting (False: the canon's box), and keep the face
    # figures in every self-training round (False: the detector re-labels alone)
    figure_cut: bool = True
    keep_face_figures: bool = True
    # the faces source: one box around the map where no face is found (False: such paintings wait, out of
    # training, until a round's detector finds their figures; a class with no face at all keeps its map boxes)
    face_fallback: bool = False
    # detector
    backbone: str = DEFAULT_BACKBONE
    iterations: int = 600
    batch_size: int = 4
    learning_rate: float = 0.01
    min_size: int = 320
    max_size: int = 480
    negative_share: float = 0.25
    complete_boxes: bool = True
    # self-training
    rounds: int = 1
    round_iterations: int = 300
    relabel: RelabelRule = RelabelRule()
    # the detections re-labelling leaves out are sampled neither as figures nor as background (False: background)
    ignore_uncertain: bool = False
    # re-labelling and evaluation also run each detector on the mirror images and merge the boxes (detect.mirrored)
    test_flip: bool = True
    # every detector trains on paintings changed at random in colour and scale (detect.augmentation)
    augment: bool = True
    seed: int = 0
    evaluate_split: str | None = None
    folder: str = "weak"
    device: str = "auto"  # maps and detectors (the classifier trains on the CPU)

    def __post_init__(self) -> None:
        if self.source not in BOX_SOURCES:
            raise BadInputError(f"unknown box source {self.source!r}; choose one of {', '.join(BOX_SOURCES)}")
        if self.rounds < 0:
            raise BadInputError(f"the number of self-training rounds must be 0 or more, got {self.rounds}")
        check_backbone(self.backbone)
        resolve_device(self.device)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WeakDetectionResult:
    """Where the final detector is, and what each stage did."""

    detector_dir: Path
    stages: list[dict[str, Any]]


def _round_dir(run: RunDirectory, plan: WeakDetectionPlan, r: int) -> Path:
    return run.root / plan.folder / f"round-{r}"


def _split(dataset: Dataset, split: str | None, where: Path) -> Dataset:
    chosen = dataset.subset(split) if split is not None else dataset
    if not chosen.samples:
        raise BadInputError(f"no image of the run's dataset is in split {split!r}", where)
    return chosen


def _has_expert_boxes(dataset: Dataset) -> bool:
    return any(b.level == "figure" for s in dataset.samples for b in s.boxes)


def _score_boxes(derived: DerivedBoxes, dataset: Dataset) -> dict[str, Any] | None:
    if not _has_expert_boxes(dataset):
        return None
    scores = evaluate_derived_boxes(dataset, derived.boxes, derived.method, level="figure",
                                    image_ids=[s.id for s in dataset.samples])
    return scores.row()


def _classifier(run: RunDirectory, dataset: Dataset, plan: WeakDetectionPlan, log: Callable[[str], None]) -> dict:
    if (run.model_dir / "meta.json").is_file():
        return {"stage": "classifier", "skipped": True}
    from iconolens.models.training import TrainingConfig, train_classifier

    log("training the classifier (off-the-shelf) on the image labels")
    config = TrainingConfig(backbone=plan.classifier_backbone, mode="off-the-shelf",
                            image_size=plan.classifier_image_size, epochs=plan.classifier_epochs, seed=plan.seed)
    outcome = train_classifier(dataset, config, run.root, source=run.dataset_json)
    return {"stage": "classifier", "val": {k: v for k, v in outcome.val_metrics.items() if isinstance(v, float)}}


def _maps(run: RunDirectory, plan: WeakDetectionPlan, log: Callable[[str], None]) -> dict:
    from iconolens.explain.collection import ExplainSettings, explain_run

    log(f"computing {plan.method} maps of the {plan.split} images at {plan.map_size} px")
    outcome = explain_run(run, [plan.method], split=plan.split, settings=ExplainSettings(image_size=plan.map_size, device=plan.device))
    return {"stage": "maps", "written": outcome.written[plan.method], "done_before": outcome.done_before[plan.method]}


def first_pseudo_boxes(run: RunDirectory, train: Dataset, plan: WeakDetectionPlan
                       ) -> tuple[DerivedBoxes, DerivedBoxes | None]:
    """Round 0's boxes, from the classifier's maps or from multiple-instance learning over proposals, and the
    boxes among them that every round keeps (the face figures of the faces source; None for other sources)."""
    if plan.source == "mil":
        from iconolens.detect.mil import mil_boxes

        return mil_boxes(train, seed=plan.seed), None
    one_box = BoxRecipe(level="figure", gate=False, percentile=70.0)
    recipe = {
        "instances": plan.recipe,
        "segments": BoxRecipe(level="figure", gate=False, segments=SegmentSeeds()),
        "one-box": one_box,
        "faces": one_box,
    }[plan.source]
    store = MapStore(run.maps_dir(plan.method))
    derived = replace(derive_boxes(train, store, recipe, method=plan.method), method=f"{plan.method}-one-box")
    if plan.source == "faces":
        from iconolens.detect.face_figures import face_figure_boxes, with_fallback
        from iconolens.detect.figure_cut import FigureCut

        faces = face_figure_boxes(train, store=store, cut=FigureCut() if plan.figure_cut else None)
        if plan.face_fallback:
            return with_fallback(faces, derived), faces
        # a class without a single face (a style that abstracts faces, say) keeps its map boxes, or it would
        # have none to learn from
        faceless = {b.label for b in derived.boxes} - {b.label for b in faces.boxes}
        return (with_fallback(faces, derived, faceless) if faceless else faces), faces
    return replace(derived, method=f"{plan.method}-{plan.source}"), None


def _read_boxes(train: Dataset, path: Path) -> list[DerivedBox]:
    """Boxes the chain wrote (the anchors, the uncertain detections: COCO detections with sample ids, as
    ``coco_detections`` writes them)."""
    boxes = []
    for entry in read_coco_detections(path):
        cid = int(entry.get("category_id", 1))
        if not 1 <= cid <= len(train.classes) or "sample_id" not in entry:
            raise BadInputError("a box names no class or no image of the collection", path)
        x, y, w, h = (float(v) for v in entry["bbox"])
        boxes.append(DerivedBox(str(entry["sample_id"]), train.classes[cid - 1], x, y, x + w, y + h,
                                mean_activation=float(entry.get("score", 1.0)), probability=1.0))
    return boxes


def _derived(name: str, boxes: list[DerivedBox]) -> DerivedBoxes:
    return DerivedBoxes(name, BoxRecipe(level="figure", gate=False), tuple(boxes),
                        tuple(sorted({b.sample_id for b in boxes})), {"boxes": len(boxes)})


def _write_boxes(derived: DerivedBoxes, train: Dataset, folder: Path) -> Path:
    return write_derived_boxes(derived, train, folder)["detections"]


def _uncertain(train: Dataset, folder: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Sample id -> the uncertain boxes a re-labelling wrote into ``folder`` (none when it wrote nothing)."""
    found = next(folder.glob("*_detections.json"), None) if folder.is_dir() else None
    regions: dict[str, list[tuple[float, float, float, float]]] = {}
    for box in _read_boxes(train, found) if found is not None else []:
        regions.setdefault(box.sample_id, []).append(box.xyxy)
    return regions


def _train(train: Dataset, boxes_file: Path, folder: Path, plan: WeakDetectionPlan, iterations: int,
           start: Path | None) -> dict:
    boxed = with_pseudo_boxes(train, read_coco_detections(boxes_file), boxes_file)
    # the classes come before images are left out, so that every round's detector has the same ones
    classes = tuple(sorted({b.label for s in boxed.samples for b in s.boxes}, key=list(train.classes).index))
    data = boxed_or_negative(boxed)
    uncertain = _uncertain(train, folder.parent / "uncertain") if plan.ignore_uncertain else None
    initial = None
    if start is not None:
        initial = torch.load(start / "weights.pt", map_location="cpu", weights_only=True)
    model, meta = train_detector(
        data, classes=classes, iterations=iterations, batch_size=plan.batch_size, learning_rate=plan.learning_rate,
        seed=plan.seed, min_size=plan.min_size, max_size=plan.max_size, backbone=plan.backbone,
        negative_share=plan.negative_share, complete_boxes=plan.complete_boxes, uncertain=uncertain,
        initial_state=initial, device=plan.device, augmentation=PaintingAugmentation() if plan.augment else None,
    )
    save_detector(folder, model, meta)
    return {"check": meta.metrics["check"], "warning": meta.metrics.get("warning"),
            "training_boxes": sum(len(s.boxes) for s in data.samples), "training_images": len(data.samples)}


def _evaluate(detector_dir: Path, dataset: Dataset, presence: Presence | None, test_flip: bool) -> dict[str, Any]:
    """COCO AP of the detector, difficult boxes ignored and counted, and the same with its scores gated by the
    classifier's presence probabilities when there are any; with ``test_flip`` all of it again (``test_flip``
    entry) for the detector run on each image and its mirror image."""
    detector, meta = load_detector(detector_dir)
    truth = [[b for b in s.boxes if b.level == "figure"] for s in dataset.samples]

    def scored(found: list) -> dict[str, Any]:
        easy = coco_average_precision(truth, found, meta.classes)
        counted = coco_average_precision(truth, found, meta.classes, ignore_difficult=False)
        return {"AP50": easy.ap50, "AP50:95": easy.ap, "AP50_difficult_counted": counted.ap50,
                "AP50:95_difficult_counted": counted.ap}

    def entry(predictions: list) -> dict[str, Any]:
        result = scored(predictions)
        if presence is not None:
            result["presence_gated"] = scored(gate_by_presence(dataset, predictions, presence))
        return result

    if not test_flip:
        predictions, _ = detect_collection(detector, dataset, meta.min_size, meta.max_size)
        return {**entry(predictions), "images": len(dataset.samples)}
    alone, both = detect_both_ways(detector, dataset.samples, meta.min_size, meta.max_size)
    return {**entry(gathered(dataset, alone)[0]), "images": len(dataset.samples),
            "test_flip": entry(gathered(dataset, both)[0])}


def weakly_supervised_detector(
    run: RunDirectory | str | Path,
    plan: WeakDetectionPlan = WeakDetectionPlan(),
    log: Callable[[str], None] = lambda message: None,
) -> WeakDetectionResult:
    """Run (or resume) the whole chain on a run whose dataset.json has image labels; returns the last detector."""
    run = run if isinstance(run, RunDirectory) else RunDirectory(run)
    if not run.dataset_json.is_file():
        raise BadInputError("no dataset.json in the run folder (create it with `iconolens data split`)", run.root)
    dataset = load_dataset_json(run.dataset_json)
    train = _split(dataset, plan.split, run.dataset_json)
    summary_path = run.root / plan.folder / "summary.json"
    done: dict[str, dict] = {}
    if summary_path.is_file():
        try:
            done = {s["stage"]: s for s in json.loads(summary_path.read_text(encoding="utf-8"))["stages"]}
        except (ValueError, KeyError, TypeError):
            raise BadInputError("the chain's summary is damaged; delete it to re-run every stage", summary_path) from None
    stages: list[dict[str, Any]] = []

    def record(name: str, work: Callable[[], dict], finished: bool) -> None:
        """Run one stage unless its output exists (then keep what the summary said of it)."""
        if finished:
            stages.append({**done.get(name, {"stage": name}), "resumed": True})
            return
        start = time.perf_counter()
        entry = {"stage": name, **work()}
        entry.setdefault("seconds", round(time.perf_counter() - start, 1))
        stages.append(entry)
        write_json_atomically(summary_path, {"plan": plan.to_json(), "stages": stages})

    if plan.source != "mil":
        record("classifier", lambda: _classifier(run, dataset, plan, log), (run.model_dir / "meta.json").is_file())
        record("maps", lambda: _maps(run, plan, log), False)
    previous: Path | None = None
    presence: Presence | None = None  # the classifier's, on the evaluation split, computed once
    detector_dir = _round_dir(run, plan, 0) / "detector"
    anchors_dir = _round_dir(run, plan, 0) / "anchors"
    for r in range(plan.rounds + 1):
        folder = _round_dir(run, plan, r)
        boxes_dir, detector_dir = folder / "boxes", folder / "detector"
        boxes_file = next(boxes_dir.glob("*_detections.json"), None) if boxes_dir.is_dir() else None

        def make_boxes(r: int = r, previous: Path | None = previous) -> dict:
            if r == 0:
                log(f"deriving pseudo boxes ({plan.source})")
                derived, anchors = first_pseudo_boxes(run, train, plan)
                if anchors is not None:  # before the boxes, whose file marks the stage done
                    _write_boxes(anchors, train, anchors_dir)
            else:
                log(f"round {r}: the detector of round {r - 1} re-labels the {plan.split} images")
                teacher, meta = load_detector(previous)
                teacher = MirroredViews(teacher) if plan.test_flip else teacher
                taught = with_pseudo_boxes(train, read_coco_detections(next((previous.parent / "boxes").glob(
                    "*_detections.json"))))
                anchors_file = next(anchors_dir.glob("*_detections.json"), None) if anchors_dir.is_dir() else None
                anchored = _read_boxes(train, anchors_file) if plan.keep_face_figures and anchors_file else []
                _, boxes, uncertain = relabel(teacher, train, taught, plan.relabel, meta.min_size, meta.max_size,
                                              anchored)
                _write_boxes(_derived(f"round{r}-uncertain", uncertain), train, folder / "uncertain")
                derived = _derived(f"round{r}", boxes)
            _write_boxes(derived, train, boxes_dir)
            images = len({b.sample_id for b in derived.boxes})
            return {"boxes": len(derived.boxes), "images_with_boxes": images,
                    "boxes_per_image": round(len(derived.boxes) / images, 3) if images else 0.0,
                    "scores": _score_boxes(derived, train)}

        record(f"boxes-{r}", make_boxes, boxes_file is not None)
        boxes_file = next(boxes_dir.glob("*_detections.json"))
        iterations = plan.iterations if r == 0 else plan.round_iterations
        log(f"round {r}: training the detector ({iterations} iterations)")
        record(f"detector-{r}", lambda: _train(train, boxes_file, detector_dir, plan, iterations, previous),
               (detector_dir / "detector.json").is_file())
        if plan.evaluate_split is not None:
            held = _split(dataset, plan.evaluate_split, run.dataset_json)
            scores_path = folder / "evaluation.json"

            def evaluate(held: Dataset = held, scores_path: Path = scores_path) -> dict:
                nonlocal presence
                if presence is None and (run.model_dir / "meta.json").is_file():
                    log(f"the classifier's presence probabilities on the {plan.evaluate_split} images")
                    presence = run_presence(run, held)
                scores = _evaluate(detector_dir, held, presence, plan.test_flip)
                write_json_atomically(scores_path, scores)
                return scores

            record(f"evaluate-{r}", evaluate, scores_path.is_file())
        previous = detector_dir
    return WeakDetectionResult(detector_dir, stages)
