"""Agreement with pytorch-grad-cam (a benchmark reference, installed by `make bench-deps`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iconolens.explain import explain_maps, normalise_maps
from iconolens.explain.cam import gradcampp_from_weight
from iconolens.explain.head import linear_gap_weight
from iconolens.explain.layers import find_target_layer
from iconolens.explain.recording import record_forward

pytest.importorskip("pytorch_grad_cam")
pytestmark = pytest.mark.slow


def _pearson(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [
        float(np.corrcoef(x.ravel(), y.ravel())[0, 1])
        for x, y in zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
        if x.std() > 0 and y.std() > 0
    ]


def test_gradcam_and_gradcampp_agree_with_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=3).eval()
    x = torch.randn(2, 3, 96, 96)
    for method, reference in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)):
        ours = normalise_maps(explain_maps(model, x, method).raw, (96, 96)).numpy()
        with reference(model=model, target_layers=[model.layer4]) as cam:
            theirs = np.stack([cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 2) for c in range(3)], axis=1)
        if method == "gradcampp":
            # pytorch-grad-cam adds 1e-6 to alpha's denominator; with the same epsilon the maps coincide.
            record = record_forward(model, x, find_target_layer(model), gradients=False)
            with torch.inference_mode():
                same = gradcampp_from_weight(record.activation, linear_gap_weight(record), 1e-6).clone()
            values = _pearson(normalise_maps(same, (96, 96)).numpy(), theirs)
            assert values and min(values) > 0.99999
        values = _pearson(ours, theirs)
        assert values and min(values) > 0.99
