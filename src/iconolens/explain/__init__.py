"""Saliency maps for classifiers: CAM, Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, VisualBackProp, RISE.

``explain_maps`` computes raw maps for every class (or a chosen few) of a batch; ``normalise_maps`` turns
them into pictures in [0, 1] at the image's size.
"""

from iconolens.explain.engine import METHODS, SaliencyResult, explain_many, explain_maps, probabilities, resolve_classes
from iconolens.explain.layers import TargetLayer, find_target_layer
from iconolens.explain.normalise import normalise_maps

__all__ = [
    "METHODS",
    "SaliencyResult",
    "TargetLayer",
    "explain_many",
    "explain_maps",
    "find_target_layer",
    "normalise_maps",
    "probabilities",
    "resolve_classes",
]
