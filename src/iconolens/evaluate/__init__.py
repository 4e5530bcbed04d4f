"""Measuring explanations and deriving boxes from them.

- ``localisation``: component IoU, global IoU, box coverage and irrelevant attention over a threshold sweep;
- ``faithfulness``: deletion and insertion curves (Petsiuk et al., 2018);
- ``boxes``: boxes from maps (weakly supervised localisation) and their COCO files;
- ``detection``: average IoU, GT-known Loc and COCO mAP of derived boxes (the thesis's Table 4.4);
- ``grid_search``: choosing Smooth Grad-CAM++'s sigma and n by localisation;
- ``sanity``: the model parameter randomisation test (Adebayo et al., 2018), with ``randomisation`` (the
  randomised copies of a model) and ``similarity`` (how alike two maps are);
- ``declarations``: what every metric measures and which way is better.
"""

from iconolens.evaluate.boxes import BoxRecipe, DerivedBox, DerivedBoxes, boxes_from_map, derive_boxes
from iconolens.evaluate.declarations import (
    DETECTION_METRICS,
    FAITHFULNESS_METRICS,
    LOCALISATION_METRICS,
    MetricDeclaration,
)
from iconolens.evaluate.detection import DetectionScores, evaluate_derived_boxes
from iconolens.evaluate.faithfulness import PerturbationCurves, perturbation_curves
from iconolens.evaluate.localisation import (
    THRESHOLDS,
    LocalisationReport,
    MapLocalisation,
    evaluate_localisation,
    localisation_curves,
)
from iconolens.evaluate.randomisation import Stage, randomisation_stages
from iconolens.evaluate.sanity import SanityResult, parameter_randomisation_test, sanity_run

__all__ = [
    "DETECTION_METRICS",
    "FAITHFULNESS_METRICS",
    "LOCALISATION_METRICS",
    "THRESHOLDS",
    "BoxRecipe",
    "DerivedBox",
    "DerivedBoxes",
    "DetectionScores",
    "LocalisationReport",
    "MapLocalisation",
    "MetricDeclaration",
    "PerturbationCurves",
    "SanityResult",
    "Stage",
    "boxes_from_map",
    "derive_boxes",
    "evaluate_derived_boxes",
    "evaluate_localisation",
    "localisation_curves",
    "parameter_randomisation_test",
    "perturbation_curves",
    "randomisation_stages",
    "sanity_run",
]
