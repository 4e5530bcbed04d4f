"""What each metric measures, stated as data.

Reports, tables and curves are generated from these declarations (titles, axis labels, the direction of
"better", what one measured item is), so adding a metric means adding a declaration, not editing every
report. The idea follows Quantus, where each metric carries its own description and preferred direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Item = Literal["box", "map", "image", "method"]


@dataclass(frozen=True)
class MetricDeclaration:
    """A metric's name in files (``key``), its title for people, and how to read its value."""

    key: str
    title: str
    measures: str
    higher_is_better: bool
    item: Item
    value_range: tuple[float, float] = (0.0, 1.0)

    @property
    def axis_label(self) -> str:
        """A y-axis label that says which way is better."""
        return f"{self.title} ({'higher' if self.higher_is_better else 'lower'} is better)"

    def best(self, values: list[float]) -> float:
        """The better of ``values`` (NaN ignored; NaN when none is a number)."""
        finite = [v for v in values if v == v]
        if not finite:
            return float("nan")
        return max(finite) if self.higher_is_better else min(finite)

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "title": self.title,
            "measures": self.measures,
            "higher_is_better": self.higher_is_better,
            "item": self.item,
            "range": list(self.value_range),
        }


COMPONENT_IOU = MetricDeclaration(
    key="component_iou",
    title="Component IoU",
    measures=(
        "for each expert box, IoU between the box and the union of the map's connected foreground components "
        "that touch it; averaged per box label (symbol), then over labels"
    ),
    higher_is_better=True,
    item="box",
)
GLOBAL_IOU = MetricDeclaration(
    key="global_iou",
    title="Global IoU",
    measures="IoU between the union of the class's boxes and the whole foreground of its map",
    higher_is_better=True,
    item="map",
)
BOX_COVERAGE = MetricDeclaration(
    key="box_coverage",
    title="Box coverage",
    measures="share of expert boxes whose intersection with the foreground is at least 20% of the box's area",
    higher_is_better=True,
    item="box",
)
IRRELEVANT_ATTENTION = MetricDeclaration(
    key="irrelevant_attention",
    title="Irrelevant attention",
    measures="share of the foreground that lies outside every expert box of the class",
    higher_is_better=False,
    item="map",
)

LOCALISATION_METRICS: tuple[MetricDeclaration, ...] = (
    COMPONENT_IOU,
    GLOBAL_IOU,
    BOX_COVERAGE,
    IRRELEVANT_ATTENTION,
)

AVERAGE_IOU = MetricDeclaration(
    key="average_iou",
    title="Average IoU",
    measures="mean, over derived boxes, of the IoU with the best-matching expert box of the same class and image",
    higher_is_better=True,
    item="box",
)
GT_KNOWN_LOC = MetricDeclaration(
    key="gt_known_loc",
    title="GT-known Loc (%)",
    measures="percentage of expert boxes matched at IoU > 0.5 by a derived box of the same class and image",
    higher_is_better=True,
    item="box",
    value_range=(0.0, 100.0),
)
MAP_50 = MetricDeclaration(
    key="map50",
    title="mAP (IoU 0.5)",
    measures="COCO average precision at IoU 0.5, averaged over classes with expert boxes",
    higher_is_better=True,
    item="method",
)

DETECTION_METRICS: tuple[MetricDeclaration, ...] = (AVERAGE_IOU, GT_KNOWN_LOC, MAP_50)

CORLOC = MetricDeclaration(
    key="corloc",
    title="CorLoc (%)",
    measures=(
        "percentage of (image, class) pairs with expert boxes whose top-scoring derived box has IoU >= 0.5 with "
        "one of them; a pair without derived boxes fails"
    ),
    higher_is_better=True,
    item="image",
    value_range=(0.0, 100.0),
)
RECALL_50 = MetricDeclaration(
    key="recall50",
    title="Recall (IoU 0.5)",
    measures="share of expert boxes overlapped at IoU >= 0.5 by some derived box of the same class and image",
    higher_is_better=True,
    item="box",
)
MAP_50_IGNORE_DIFFICULT = MetricDeclaration(
    key="map50_ignore_difficult",
    title="mAP (IoU 0.5, difficult ignored)",
    measures=(
        "COCO average precision at IoU 0.5 with difficult expert boxes neither required nor penalised (the "
        "VOC rule), averaged over classes with expert boxes"
    ),
    higher_is_better=True,
    item="method",
)

# Whether every instance of a class was found, not only the most salient one. Boxes per image, shown beside
# them in the box tables, is a count with no better direction, so it has no declaration.
INSTANCE_METRICS: tuple[MetricDeclaration, ...] = (CORLOC, RECALL_50, MAP_50_IGNORE_DIFFICULT)

BOX_TABLE_METRICS: tuple[MetricDeclaration, ...] = DETECTION_METRICS + INSTANCE_METRICS

DELETION_AUC = MetricDeclaration(
    key="deletion_auc",
    title="Deletion area",
    measures="area under the score curve while the most salient pixels are blurred away first",
    higher_is_better=False,
    item="image",
)
INSERTION_AUC = MetricDeclaration(
    key="insertion_auc",
    title="Insertion area",
    measures="area under the score curve while the most salient pixels are restored first into a blurred image",
    higher_is_better=True,
    item="image",
)

FAITHFULNESS_METRICS: tuple[MetricDeclaration, ...] = (DELETION_AUC, INSERTION_AUC)


# The parameter randomisation test (Adebayo et al. 2018) compares the trained model's map with the map of a
# model whose weights were partly or wholly re-initialised. A map that depends on what the model learned
# changes, so a lower similarity is the better outcome for the method.
SPEARMAN = MetricDeclaration(
    key="spearman",
    title="Spearman rank correlation",
    measures="rank correlation of the pixels of the trained and the randomised model's maps, at the image's size",
    higher_is_better=False,
    item="map",
    value_range=(-1.0, 1.0),
)
SPEARMAN_ABS = MetricDeclaration(
    key="spearman_abs",
    title="Spearman rank correlation (absolute values)",
    measures="rank correlation of the absolute values of the trained and the randomised model's maps",
    higher_is_better=False,
    item="map",
    value_range=(-1.0, 1.0),
)
SSIM = MetricDeclaration(
    key="ssim",
    title="SSIM",
    measures="structural similarity (11 x 11 Gaussian windows) of the two maps, each scaled to [0, 1]",
    higher_is_better=False,
    item="map",
    value_range=(-1.0, 1.0),
)
HOG_SIMILARITY = MetricDeclaration(
    key="hog",
    title="HOG correlation",
    measures="Pearson correlation of the histograms of oriented gradients of the two maps, each scaled to [0, 1]",
    higher_is_better=False,
    item="map",
    value_range=(-1.0, 1.0),
)

RANDOMISATION_MEASURES: tuple[MetricDeclaration, ...] = (SPEARMAN, SPEARMAN_ABS, SSIM, HOG_SIMILARITY)


def declaration(key: str) -> MetricDeclaration:
    """The declaration named ``key``."""
    for metric in (LOCALISATION_METRICS + DETECTION_METRICS + INSTANCE_METRICS + FAITHFULNESS_METRICS
                   + RANDOMISATION_MEASURES):
        if metric.key == key:
            return metric
    raise KeyError(f"no metric called {key!r}")
