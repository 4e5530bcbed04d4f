"""A face detector that needs no training: MTCNN (Zhang et al., 2016) with the weights shipped in facenet-pytorch.

Faces are the objects Bengamra et al. explain in paintings. MTCNN has one class, so every detection's class
vector is ``[1]`` and its face probability (the output network's score) serves as both score and objectness:
D-RISE's similarity then reduces to ``IoU x face probability``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from iconolens.detect.detections import Detections
from iconolens.errors import IconolensError


class MTCNNDetector:
    """Detector-protocol adapter around facenet-pytorch's MTCNN (``classes == ("face",)``).

    ``min_face_size`` in pixels, ``thresholds`` of the three cascade stages, ``min_score`` drops weaker faces.
    """

    classes: tuple[str, ...] = ("face",)

    def __init__(
        self, min_face_size: int = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709,
        min_score: float = 0.0,
    ) -> None:
        try:
            from facenet_pytorch.models.mtcnn import MTCNN
        except ImportError as exc:
            raise IconolensError(
                f"the MTCNN face detector needs facenet-pytorch ({exc}); install it with "
                "`pip install --no-deps facenet-pytorch` and `pip install requests tqdm`"
            ) from None
        self.network = MTCNN(min_face_size=min_face_size, thresholds=list(thresholds), factor=factor, keep_all=True)
        self.network.eval()
        self.min_score = min_score

    def __call__(self, images: Tensor) -> list[Detections]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        if images.shape[0] == 0:
            return []
        pixels = (images.clamp(0, 1) * 255.0).permute(0, 2, 3, 1)
        with torch.inference_mode():
            found, _ = detect_face(
                pixels, self.network.min_face_size, self.network.pnet, self.network.rnet, self.network.onet,
                self.network.thresholds, self.network.factor, torch.device("cpu"),
            )
        result = []
        for boxes in found:
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            boxes = boxes[boxes[:, 4] >= self.min_score]
            probability = torch.from_numpy(boxes[:, 4].copy())
            result.append(Detections(
                boxes=torch.from_numpy(boxes[:, :4].copy()),
                scores=probability,
                class_probs=torch.ones(len(boxes), 1),
                objectness=probability.clone(),
            ))
        return result
