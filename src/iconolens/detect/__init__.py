"""Object detectors in paintings and the measurement of their explanations.

``detections`` (the Detector protocol every part speaks to), ``faster_rcnn`` and ``mtcnn`` (built-in
adapters), ``training`` and ``checkpoint`` (Faster R-CNN on expert or pseudo boxes), ``evaluation`` (COCO AP),
``measures`` (deletion/insertion, AP under perturbation, pointing game, average saliency) and ``failures``
(false positives and missed objects with their D-RISE maps). D-RISE itself is ``iconolens.explain.drise``.
"""
