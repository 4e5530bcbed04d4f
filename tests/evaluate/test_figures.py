"""Figures and tables are drawn from the metric declarations, and boxes are drawn where they are."""

from __future__ import annotations

import numpy as np
from PIL import Image

from iconolens.evaluate.declarations import (
    DETECTION_METRICS,
    GLOBAL_IOU,
    IRRELEVANT_ATTENTION,
    LOCALISATION_METRICS,
    declaration,
)
from iconolens.report.figures import iou_histogram, metric_curve
from iconolens.report.tables import csv_text, markdown_table


def test_declarations_state_direction_and_titles():
    assert [m.key for m in LOCALISATION_METRICS] == [
        "component_iou", "global_iou", "box_coverage", "irrelevant_attention",
    ]
    assert not IRRELEVANT_ATTENTION.higher_is_better and GLOBAL_IOU.higher_is_better
    assert IRRELEVANT_ATTENTION.axis_label == "Irrelevant attention (lower is better)"
    assert IRRELEVANT_ATTENTION.best([0.4, float("nan"), 0.2]) == 0.2
    assert GLOBAL_IOU.best([0.4, 0.2]) == 0.4
    assert declaration("map50").title == "mAP (IoU 0.5)"


def test_markdown_table_follows_declarations():
    rows = [{"method": "gradcam", "average_iou": 0.55, "gt_known_loc": 61.2, "map50": None, "boxes": 3}]
    text = markdown_table(rows, DETECTION_METRICS, extra=[("boxes", "boxes")])
    header, rule, line = text.strip().splitlines()
    assert header == "| Method | Average IoU ↑ | GT-known Loc (%) ↑ | mAP (IoU 0.5) ↑ | boxes |"
    assert line == "| gradcam | 0.550 | 61.20 | n/a | 3 |"
    assert csv_text(rows).splitlines()[1] == "gradcam,0.55,61.2,,3"


def test_curve_and_histogram_files_are_pngs(tmp_path):
    path = metric_curve(np.linspace(0, 1, 21), {"a": np.linspace(0, 1, 21), "b": np.full(21, np.nan)}, GLOBAL_IOU,
                        tmp_path / "c.png")
    assert Image.open(path).format == "PNG"
    path = iou_histogram({"a": [0.1, 0.55, 0.9], "b": []}, tmp_path / "h.png")
    assert Image.open(path).format == "PNG"
