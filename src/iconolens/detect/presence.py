"""Presence gating: a detection is no more likely than its class is to be in the painting at all.

A detector trained on pseudo boxes learns what a person looks like from a few hundred paintings with people,
and fires on the painted surroundings in paintings without any: on People-Art's val split the faces chain's
round-1 detector scores 459 boxes above 0.5 in the 398 paintings without people, against 510 in the 189 with
them. The run's image classifier was trained on exactly the labels that say whether a painting holds people,
and that is the one question it answers well. Multiplying each detection's score by the classifier's
probability of the detection's class in that image ranks the detections of paintings the classifier deems
empty below those of paintings it does not; within one image the order of the detections is unchanged.

The classifier needs nothing but image labels, so a gated detector is still a detector from image labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from iconolens.data.records import Dataset
from iconolens.data.stream import decoded_batches
from iconolens.detect.evaluation import ScoredBox
from iconolens.models.meta import ModelMeta
from iconolens.models.training import predict_probabilities
from iconolens.progress import progress
from iconolens.run import RunDirectory

#: sample id -> class name -> the classifier's probability that the image holds that class
Presence = Mapping[str, Mapping[str, float]]


def presence_probabilities(model: nn.Module, meta: ModelMeta, dataset: Dataset, workers: int = 1,
                           batch_size: int = 32) -> dict[str, dict[str, float]]:
    """The classifier's probability of each of its classes in each readable image of ``dataset``, batch by batch
    (memory stays flat however large the collection; the images need no labels)."""
    presence: dict[str, dict[str, float]] = {}
    batches = decoded_batches(dataset.samples, meta.input_size, batch_size, workers=workers)
    for batch in progress(batches, "presence probabilities", total=-(-len(dataset.samples) // batch_size)):
        if not batch.samples:
            continue
        probabilities = predict_probabilities(model, meta, batch.images, batch_size)
        presence.update({sample.id: {name: float(p) for name, p in zip(meta.classes, row)}
                         for sample, row in zip(batch.samples, probabilities)})
    return presence


def run_presence(run: RunDirectory | str | Path, dataset: Dataset) -> dict[str, dict[str, float]]:
    """``presence_probabilities`` of the run's classifier on ``dataset``."""
    from iconolens.models.checkpoint import load_run_model

    from iconolens.inference import network_on

    model, meta = load_run_model(run)
    return presence_probabilities(network_on(model, torch.device("cpu"), meta.input_size), meta, dataset)


def gate_by_presence(dataset: Dataset, predictions: Sequence[Sequence[ScoredBox]], presence: Presence
                     ) -> list[list[ScoredBox]]:
    """Each detection's score times the probability of its class in its image (one list per sample of
    ``dataset``). A class the classifier does not know, or an image it could not read, leaves scores as they are."""
    gated = []
    for sample, found in zip(dataset.samples, predictions, strict=True):
        known = presence.get(sample.id, {})
        gated.append([replace(d, score=d.score * known.get(d.label, 1.0)) for d in found])
    return gated
