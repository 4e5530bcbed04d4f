"""XGrad-CAM, HiResCAM, LayerCAM, Ablation-CAM, Score-CAM and Eigen-CAM against their papers' formulas,
evaluated directly: one image and one class at a time, explicit loops over channels and positions, gradients
from autograd through the network's own head, ablations and masks by running the network again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iconolens.explain import explain_maps

from .conftest import CLASSES
from .test_cam import assert_close, direct_maps


def direct_xgradcam(features, gradient):
    total = torch.zeros_like(features[0])
    for k in range(features.shape[0]):
        channel_sum = float(features[k].sum())
        alpha = 0.0 if channel_sum == 0 else float((features[k] / channel_sum * gradient[k]).sum())
        total += alpha * features[k]
    return total.clamp(min=0)


def direct_hirescam(features, gradient):
    total = torch.zeros_like(features[0])
    for k in range(features.shape[0]):
        total += gradient[k] * features[k]
    return total


def direct_layercam(features, gradient):
    total = torch.zeros_like(features[0])
    for k in range(features.shape[0]):
        total += gradient[k].clamp(min=0) * features[k]
    return total.clamp(min=0)


GRADIENT_FORMULAS = [("xgradcam", direct_xgradcam), ("hirescam", direct_hirescam), ("layercam", direct_layercam)]


@pytest.mark.parametrize("method,formula", GRADIENT_FORMULAS)
@pytest.mark.parametrize("net_name", ["gap_net", "mlp_net", "flatten_net"])
def test_gradient_methods_equal_their_formulas(request, images, net_name, method, formula):
    net = request.getfixturevalue(net_name)
    layer = "body" if net_name == "flatten_net" else None
    result = explain_maps(net, images, method, target_layer=layer)
    assert result.closed_form == (net_name == "gap_net")
    expected = direct_maps(net, images, formula)
    assert float(expected.abs().max()) > 0
    assert_close(result.raw, expected)


def test_hirescam_of_a_gap_head_is_cam_over_the_map_area(gap_net, images):
    hires = explain_maps(gap_net, images, "hirescam").raw
    cam = explain_maps(gap_net, images, "cam").raw
    assert_close(hires * hires.shape[-1] * hires.shape[-2], cam)


def test_xgradcam_of_a_gap_head_is_gradcam(gap_net, images):
    assert_close(explain_maps(gap_net, images, "xgradcam").raw, explain_maps(gap_net, images, "gradcam").raw)


def direct_ablationcam(net, image, cls):
    """Zero each channel in turn and run the head again."""
    features = net.body(image[None]).detach()
    with torch.no_grad():
        score = float(net.head(features)[0, cls])
        total = torch.zeros_like(features[0, 0])
        for k in range(features.shape[1]):
            ablated = features.clone()
            ablated[0, k] = 0
            drop = score - float(net.head(ablated)[0, cls])
            total += (drop / score) * features[0, k]
    return total.clamp(min=0)


@pytest.mark.parametrize("net_name", ["gap_net", "mlp_net"])
def test_ablationcam_equals_zeroing_each_channel(request, images, net_name):
    net = request.getfixturevalue(net_name)
    result = explain_maps(net, images, "ablationcam")
    assert result.closed_form == (net_name == "gap_net")
    expected = torch.stack([torch.stack([direct_ablationcam(net, x, c) for c in range(CLASSES)]) for x in images])
    assert float(expected.max()) > 0
    assert_close(result.raw, expected)


class _SkipNet(torch.nn.Module):
    """The head reuses the input: ``fc(max_xy(conv(x) + x))``, or with ``concatenate`` ``cat(conv(x), x)``."""

    def __init__(self, concatenate: bool):
        super().__init__()
        self.concatenate = concatenate
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.fc = torch.nn.Linear(6 if concatenate else 3, CLASSES)

    def body(self, x):
        return self.conv(x)

    def forward(self, x):
        return self.head(self.conv(x), x)

    def head(self, features, x):
        mixed = torch.cat([features, x], dim=1) if self.concatenate else features + x
        return self.fc(mixed.amax(dim=(2, 3)))


def test_ablationcam_reruns_a_head_with_a_skip_connection_exactly(images):
    torch.manual_seed(0)
    net = _SkipNet(concatenate=False).double()
    result = explain_maps(net, images, "ablationcam", target_layer="conv")
    expected = []
    for image in images:
        features = net.conv(image[None]).detach()
        per_class = []
        with torch.no_grad():
            for c in range(CLASSES):
                score = float(net.head(features, image[None])[0, c])
                total = torch.zeros_like(features[0, 0])
                for k in range(3):
                    ablated = features.clone()
                    ablated[0, k] = 0
                    total += (score - float(net.head(ablated, image[None])[0, c])) / score * features[0, k]
                per_class.append(total.clamp(min=0))
        expected.append(torch.stack(per_class))
    assert_close(result.raw, torch.stack(expected))


def test_ablationcam_of_a_head_that_cannot_run_alone_says_so(images):
    from iconolens.errors import BadInputError

    torch.manual_seed(0)
    with pytest.raises(BadInputError, match="cannot rerun the layers after 'conv'"):
        explain_maps(_SkipNet(concatenate=True).double(), images, "ablationcam", target_layer="conv")


def direct_scorecam(net, image, cls, activation="softmax"):
    """Masks built one channel at a time; probabilities of the masked image and of the all-zero baseline."""
    features = net.body(image[None]).detach()[0]
    prob = (lambda z: torch.sigmoid(z)) if activation == "sigmoid" else (lambda z: torch.softmax(z, dim=1))
    with torch.no_grad():
        baseline = float(prob(net(torch.zeros_like(image[None])))[0, cls])
        total = torch.zeros_like(features[0])
        for k in range(features.shape[0]):
            up = F.interpolate(features[k][None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            span = float(up.max() - up.min())
            mask = torch.zeros_like(up) if span == 0 else (up - up.min()) / span
            increase = float(prob(net((image * mask)[None]))[0, cls]) - baseline
            total += increase * features[k]
    return total.clamp(min=0)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("net_name", ["gap_net", "mlp_net"])
def test_scorecam_equals_masking_with_each_channel(request, images, net_name, activation):
    net = request.getfixturevalue(net_name)
    # A budget of 1 image per pass and one of many must give the same maps.
    for batch_size in (1, 64):
        result = explain_maps(net, images, "scorecam", activation=activation, batch_size=batch_size)
        expected = torch.stack(
            [torch.stack([direct_scorecam(net, x, c, activation) for c in range(CLASSES)]) for x in images]
        )
        assert float(expected.max()) > 0
        assert_close(result.raw, expected)


def test_scorecam_for_chosen_classes_equals_those_of_all_classes(mlp_net, images):
    every = explain_maps(mlp_net, images, "scorecam").raw
    chosen = explain_maps(mlp_net, images, "scorecam", classes=[3, 1]).raw
    assert_close(chosen, every[:, [3, 1]])


def test_eigencam_is_the_projection_on_the_first_singular_vector(gap_net, images):
    result = explain_maps(gap_net, images, "eigencam")
    features = gap_net.body(images).detach().numpy()
    for n in range(len(images)):
        k, h, w = features[n].shape
        matrix = features[n].reshape(k, h * w).T  # positions x channels, not centred
        _, _, vt = np.linalg.svd(matrix, full_matrices=False)
        projection = matrix @ vt[0]
        if projection.sum() < 0:
            projection = -projection
        for c in range(CLASSES):  # class-agnostic: every class has the same map
            np.testing.assert_allclose(result.raw[n, c].numpy().ravel(), projection, rtol=1e-8, atol=1e-10)
        # Non-negative feature maps give a non-negative first singular vector, hence a non-negative map.
        assert projection.min() >= -1e-10 and projection.max() > 0


def test_eigencam_sign_does_not_depend_on_the_svd_sign():
    from iconolens.explain.cam import eigencam

    generator = torch.Generator().manual_seed(3)
    features = torch.rand((2, 5, 4, 4), generator=generator, dtype=torch.float64)
    # Negated feature maps have the same principal axis; the rule makes the map sum non-negative either way.
    for sign in (1, -1):
        maps = eigencam(sign * features)
        assert (maps.sum(dim=(1, 2, 3)) >= 0).all()


class _ThreeStageNet(torch.nn.Module):
    """Stages at 8x8, 4x4 and 2x2 for 8x8 inputs, then GAP + linear."""

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d
        self.features = torch.nn.Sequential(
            conv(3, 4, 3, padding=1), torch.nn.ReLU(),
            conv(4, 5, 3, stride=2, padding=1), torch.nn.ReLU(),
            conv(5, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
        )
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(6, CLASSES)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def direct_fused_layercam(net, image, cls, stages=("1", "3", "5")):
    outputs = {}
    handles = [
        net.features[int(i)].register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out)) for i in stages
    ]
    score = net(image[None])[0, cls]
    for handle in handles:
        handle.remove()
    fused = torch.zeros(image.shape[-2:], dtype=image.dtype)
    for i in stages:
        (gradient,) = torch.autograd.grad(score, outputs[i], retain_graph=True)
        stage_map = direct_layercam(outputs[i].detach()[0], gradient[0])
        peak = float(stage_map.max())
        scaled = torch.tanh(2.0 * stage_map / peak) if peak > 0 else stage_map
        up = F.interpolate(scaled[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        fused = torch.maximum(fused, up)
    return fused


def test_fused_layercam_is_the_max_of_scaled_stage_maps(images):
    torch.manual_seed(4)
    net = _ThreeStageNet().double()
    result = explain_maps(net, images, "layercam_fused")
    assert result.target_layer == "features.1,features.3,features.5"
    assert result.raw.shape == (len(images), CLASSES, 8, 8)
    expected = torch.stack([torch.stack([direct_fused_layercam(net, x, c) for c in range(CLASSES)]) for x in images])
    assert float(expected.max()) > 0
    assert_close(result.raw, expected)
    named = explain_maps(net, images, "layercam_fused", fuse_layers=["features.3", "features.5"]).raw
    assert named.shape == (len(images), CLASSES, 4, 4)


def test_scorecam_skips_constant_channels_exactly(gap_net, images):
    """A channel that is 0 everywhere masks the whole image: its score is the baseline's, with no pass."""
    from iconolens.explain.scorecam import masked_scores

    features = gap_net.body(images).detach()
    features[:, 2] = 0
    features[1, 4] = 1.5
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return torch.softmax(gap_net(batch), dim=1)

    baseline = predict(torch.zeros_like(images[:1]))
    scores = masked_scores(predict, images, features, 64, baseline)
    varying = sum(float(features[n, k].max()) != float(features[n, k].min()) for n in range(3) for k in range(6))
    assert varying <= 3 * 6 - 4  # the four channels made constant above, and any the ReLU left at 0
    assert sum(calls) - 1 == varying  # one masked image per varying channel, besides the baseline
    for n in range(len(images)):
        for k in range(6):
            up = F.interpolate(features[n, k][None, None], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
            span = float(up.max() - up.min())
            mask = torch.zeros_like(up) if span == 0 else (up - up.min()) / span
            expected = torch.softmax(gap_net((images[n] * mask)[None]), dim=1)[0]
            torch.testing.assert_close(scores[n, k], expected.detach(), rtol=1e-9, atol=1e-12)


ONE_PASS = ["cam", "gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "ablationcam", "eigencam"]


@pytest.mark.parametrize("net_name", ["gap_net", "mlp_net"])
def test_several_methods_share_one_forward_pass_and_keep_their_maps(request, images, net_name):
    from iconolens.explain import explain_many

    net = request.getfixturevalue(net_name)
    methods = ONE_PASS if net_name == "gap_net" else [m for m in ONE_PASS if m not in ("cam", "ablationcam")]
    methods = methods + ["vbp", "smoothgradcampp"]
    calls = []
    handle = net.register_forward_hook(lambda m, a, out: calls.append(len(a[0])))
    together = explain_many(net, images, methods)
    handle.remove()
    # One pass of the 3 images for all one-pass methods, one for vbp, and 5 noisy copies for Smooth
    # Grad-CAM++, which reuses the probabilities instead of passing the clean images again.
    assert calls == [3, 3, 15]
    for method in methods:
        alone = explain_maps(net, images, method)
        assert_close(together[method].raw, alone.raw)
        assert_close(together[method].scores, alone.scores)
        assert together[method].closed_form == alone.closed_form
