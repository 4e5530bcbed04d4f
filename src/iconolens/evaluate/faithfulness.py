"""Faithfulness of a saliency map: deletion and insertion curves (Petsiuk et al., 2018).

A map is faithful when the pixels it ranks highest are the ones the model's score depends on. Deletion
replaces the most salient pixels first with a heavily blurred copy of the image and records the score as
more and more pixels go: a faithful map makes it fall fast (low area, lower is better). Insertion starts
from the blurred image and puts the original pixels back in the same order: a faithful map makes the score
rise fast (high area, higher is better). Blurring instead of painting pixels black keeps the perturbed
images closer to the images the model was trained on.

The score function is generic (a classifier's class probability, a detector's box similarity, ...); every
batch of steps costs one call of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

if TYPE_CHECKING:
    from iconolens.data.records import Sample
    from iconolens.explain.store import MapStore
    from iconolens.models.meta import ModelMeta

ScoreBatch = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PerturbationCurves:
    """Scores after removing/inserting the top ``fractions`` of pixels, and the curves' areas.

    ``fractions[k]`` is the share of pixels changed at step ``k`` (0 first, 1 last); ``deletion[k]`` and
    ``insertion[k]`` the scores there. Areas are trapezoids over ``fractions``, so they lie in the score's
    range: deletion area lower is better, insertion area higher is better.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float


def blurred_copy(image: torch.Tensor, kernel: int = 51, sigma: float = 50.0) -> torch.Tensor:
    """A Gaussian-blurred copy of a ``(3, H, W)`` image: the "removed information" baseline.

    OpenCV's reflected border is used so that images smaller than the kernel still blur.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"blur kernel must be a positive odd number of pixels, got {kernel}")
    pixels = image.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous().numpy()
    blurred = cv2.GaussianBlur(pixels, (kernel, kernel), sigmaX=sigma, sigmaY=sigma,
                               borderType=cv2.BORDER_REFLECT_101)
    if blurred.ndim == 2:  # OpenCV drops a single channel axis
        blurred = blurred[:, :, None]
    return torch.from_numpy(blurred).permute(2, 0, 1).to(image.device, image.dtype)


def pixel_ranks(saliency: np.ndarray) -> np.ndarray:
    """Rank of every pixel (0 = most salient), flattened; ties keep reading order so results are stable."""
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks


def _scores_along(
    start: torch.Tensor,
    end: torch.Tensor,
    ranks: torch.Tensor,
    counts: np.ndarray,
    score_batch: ScoreBatch,
    batch_size: int,
) -> np.ndarray:
    """Score images that take ``end``'s pixels at the ``counts[k]`` top-ranked positions, ``start``'s elsewhere."""
    _, height, width = start.shape
    scores: list[np.ndarray] = []
    for first in range(0, len(counts), batch_size):
        chunk = torch.as_tensor(counts[first:first + batch_size], device=ranks.device)
        masks = (ranks[None, :] < chunk[:, None]).reshape(-1, 1, height, width)
        batch = torch.where(masks, end[None], start[None])
        with torch.no_grad():
            out = score_batch(batch)
        out = torch.as_tensor(out).detach().to("cpu", torch.float64).reshape(-1)
        if out.numel() != len(chunk):
            raise ValueError(f"score_batch returned {out.numel()} scores for a batch of {len(chunk)} images")
        scores.append(out.numpy())
    return np.concatenate(scores)


def perturbation_curves(
    image: torch.Tensor,
    saliency: np.ndarray,
    score_batch: ScoreBatch,
    steps: int = 50,
    batch_size: int = 16,
    blur_kernel: int = 51,
    blur_sigma: float = 50.0,
) -> PerturbationCurves:
    """Deletion and insertion curves of ``saliency`` for the model behind ``score_batch``.

    ``image`` is the model's input ``(3, H, W)``; ``saliency`` an ``(H, W)`` map (any scale; only the
    ranking matters). Step ``k`` of ``steps`` changes the ``round(k * H * W / steps)`` most salient pixels,
    so the curves have ``steps + 1`` points from the untouched image (deletion) or the fully blurred image
    (insertion) to the other end. ``score_batch`` maps ``(B, 3, H, W)`` to ``(B,)`` scores.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
    saliency = np.asarray(saliency)
    if saliency.shape != tuple(image.shape[1:]):
        raise ValueError(f"saliency must be {tuple(image.shape[1:])} like the image, got {saliency.shape}")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    n_pixels = saliency.size
    counts = np.rint(np.arange(steps + 1) * n_pixels / steps).astype(np.int64)
    fractions = counts / n_pixels
    blurred = blurred_copy(image, blur_kernel, blur_sigma)
    ranks = torch.from_numpy(pixel_ranks(saliency)).to(image.device)
    deletion = _scores_along(image, blurred, ranks, counts, score_batch, batch_size)
    insertion = _scores_along(blurred, image, ranks, counts, score_batch, batch_size)
    return PerturbationCurves(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=float(np.trapezoid(deletion, fractions)),
        insertion_auc=float(np.trapezoid(insertion, fractions)),
    )


@dataclass
class FaithfulnessAreas:
    """Per method, the deletion and insertion areas of every (image, label) pair measured, in image order, and
    the pairs skipped: what slices of a collection compute independently and :meth:`joined` puts together."""

    deletion: dict[str, list[float]]
    insertion: dict[str, list[float]]
    skipped: dict[str, int]

    @staticmethod
    def empty(methods: Iterable[str]) -> FaithfulnessAreas:
        """No pair measured or skipped yet, for each of ``methods``."""
        methods = list(methods)
        return FaithfulnessAreas({m: [] for m in methods}, {m: [] for m in methods}, dict.fromkeys(methods, 0))

    @staticmethod
    def joined(parts: Sequence[FaithfulnessAreas]) -> FaithfulnessAreas:
        """Consecutive slices' areas as if measured in one pass."""
        out = FaithfulnessAreas.empty([])
        for part in parts:
            for method in part.skipped:
                out.deletion.setdefault(method, []).extend(part.deletion[method])
                out.insertion.setdefault(method, []).extend(part.insertion[method])
                out.skipped[method] = out.skipped.get(method, 0) + part.skipped[method]
        return out

    def means(self) -> dict[str, dict[str, float]]:
        """Per method: mean deletion and insertion areas (NaN without pairs), pairs measured and skipped."""
        out = {}
        for method, skipped in self.skipped.items():
            n = len(self.deletion[method])
            out[method] = {
                "deletion_auc": sum(self.deletion[method]) / n if n else float("nan"),
                "insertion_auc": sum(self.insertion[method]) / n if n else float("nan"),
                "pairs": n,
                "skipped": skipped,
            }
        return out


def faithfulness_areas(
    model: torch.nn.Module,
    meta: ModelMeta,
    samples: Sequence[Sample],
    stores: Mapping[str, MapStore],
    steps: int = 50,
    batch_size: int = 16,
    workers: int = 0,
) -> FaithfulnessAreas:
    """Deletion and insertion areas of each method's stored maps, for every labelled class of ``samples``.

    Each image is fed at the model's input size (decoded in ``workers`` processes while the model runs); its
    map for a labelled class is normalised to that size and the class's probability (softmax or sigmoid, as
    the model was trained) is the score. Pairs without stored maps, or with a class the model does not know,
    are skipped and counted.
    """
    from iconolens.data.stream import decoded_batches
    from iconolens.errors import BadInputError
    from iconolens.models.transforms import normalise

    index = {c: i for i, c in enumerate(meta.classes)}
    sigmoid = meta.task == "multilabel"
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    areas = FaithfulnessAreas.empty(stores)
    store_indices = {m: {c: i for i, c in enumerate(store.classes)} for m, store in stores.items()}
    measured = []
    for sample in samples:
        methods = [m for m, s in stores.items() if s.has(sample.id)]
        for m in stores:
            if m not in methods:
                areas.skipped[m] += len(sample.labels)
        if methods and any(c in index for c in sample.labels):
            measured.append((sample, methods))
    model.eval()
    size = (meta.input_size, meta.input_size)
    images = decoded_batches([sample for sample, _ in measured], meta.input_size, 1, workers=workers)
    for (sample, methods), decoded in zip(measured, images):
        if decoded.problems:
            raise BadInputError(decoded.problems[0]["message"])
        image = normalise(decoded.images, meta.mean, meta.std)[0].to(device)
        for method in methods:
            store_index = store_indices[method]
            raw, _ = stores[method].read(sample.id)
            for cls in (c for c in sample.labels if c in index):
                if cls not in store_index:
                    areas.skipped[method] += 1
                    continue
                k = index[cls]

                def score(batch: torch.Tensor, k: int = k) -> torch.Tensor:
                    logits = model(batch)
                    probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=1)
                    return probs[:, k]

                saliency = torch.nn.functional.interpolate(
                    torch.as_tensor(raw[store_index[cls]])[None, None].float(), size=size, mode="bilinear",
                    align_corners=False,
                )[0, 0].numpy()
                curves = perturbation_curves(image, saliency, score, steps=steps, batch_size=batch_size)
                areas.deletion[method].append(curves.deletion_auc)
                areas.insertion[method].append(curves.insertion_auc)
    return areas

