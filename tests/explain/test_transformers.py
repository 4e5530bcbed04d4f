"""Grad-CAM-family maps of ViT, Swin and ConvNeXt: tokens and channels-last maps seen as a grid.

Each map is compared with a slow computation written here: the layer hooked by hand, one autograd call
per class, the tokens reshaped into the patch grid by hand, and the Grad-CAM formulas applied directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import SwinTransformer, VisionTransformer
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError
from iconolens.explain import explain_maps, find_target_layer
from iconolens.explain.layers import TargetLayer, module_named
from iconolens.explain.recording import record_forward
from iconolens.explain.tokens import map_layout, token_layout
from iconolens.models.meta import ModelMeta

CLASSES = 5


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=CLASSES
    )
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero: every gradient would be 0
    return model.double().eval()


@pytest.fixture(scope="module")
def swin() -> SwinTransformer:
    torch.manual_seed(1)
    model = SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2], num_classes=CLASSES
    )
    nn.init.normal_(model.head.weight)
    return model.double().eval()


@pytest.fixture(scope="module")
def convnext() -> ConvNeXt:
    torch.manual_seed(2)
    model = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=CLASSES)
    nn.init.normal_(model.classifier[2].weight)
    return model.double().eval()


class TokenNet(nn.Module):
    """Patch tokens after ``extra`` learnt leading tokens, a per-token layer, a non-linear mean head."""

    def __init__(self, extra: int, patch_info: bool) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 6, 8, stride=8)
        self.extra = nn.Parameter(torch.randn(1, extra, 6))
        self.block = nn.Sequential(nn.Linear(6, 6), nn.Tanh())
        self.fc = nn.Linear(6, CLASSES)
        if patch_info:
            self.patch_size = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.extra.expand(len(x), -1, -1), tokens], dim=1))
        return self.fc(torch.tanh(tokens.mean(dim=1)) * 3)


def _images(size: int = 32, count: int = 2) -> torch.Tensor:
    return torch.randn((count, 3, size, size), generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def _gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    alpha = g.mean(dim=(2, 3))
    return torch.relu((alpha[:, :, None, None] * a).sum(dim=1))


def _gradcampp(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    denominator = 2 * g**2 + a.sum(dim=(2, 3), keepdim=True) * g**3
    alpha = torch.where(denominator != 0, g**2 / torch.where(denominator != 0, denominator, 1), 0)
    weights = (alpha * torch.relu(g)).sum(dim=(2, 3))
    return torch.relu((weights[:, :, None, None] * a).sum(dim=1))


def _xgradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    total = a.sum(dim=(2, 3), keepdim=True)
    alpha = (torch.where(total != 0, a / torch.where(total != 0, total, 1), 0) * g).sum(dim=(2, 3))
    return torch.relu((alpha[:, :, None, None] * a).sum(dim=1))


def _hirescam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g * a).sum(dim=1)


def _layercam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu((torch.relu(g) * a).sum(dim=1))


FORMULAS = {
    "gradcam": _gradcam, "gradcampp": _gradcampp, "xgradcam": _xgradcam, "hirescam": _hirescam, "layercam": _layercam,
}


def _tokens_as_grid(leading: int, side: int):
    def convert(tokens: torch.Tensor) -> torch.Tensor:
        n, _, d = tokens.shape
        return tokens[:, leading:].reshape(n, side, side, d).permute(0, 3, 1, 2)

    return convert


def _channels_last_as_grid(maps: torch.Tensor) -> torch.Tensor:
    return maps.permute(0, 3, 1, 2)


def _slow_maps(model: nn.Module, images: torch.Tensor, layer: str, to_grid, method: str) -> torch.Tensor:
    """(N, C, h, w) maps from one autograd call per class on the layer's own output."""
    captured = {}
    handle = module_named(model, layer).register_forward_hook(lambda m, a, out: captured.update(out=out))
    try:
        logits = model(images)
    finally:
        handle.remove()
    out = captured["out"]
    maps = []
    for cls in range(logits.shape[1]):
        (gradient,) = torch.autograd.grad(logits[:, cls].sum(), out, retain_graph=True)
        maps.append(FORMULAS[method](to_grid(out.detach()), to_grid(gradient)))
    return torch.stack(maps, dim=1)


def _assert_maps_equal(result, expected: torch.Tensor) -> None:
    assert expected.amax() > 0  # a comparison of all-zero maps would prove nothing
    assert result.raw.shape == expected.shape
    torch.testing.assert_close(result.raw, expected, rtol=1e-7, atol=1e-9 * float(expected.abs().max()))


@pytest.mark.parametrize("method", list(FORMULAS))
def test_vit_maps_are_on_the_patch_grid_and_equal_autograd(vit, method):
    images = _images()
    result = explain_maps(vit, images, method)
    assert result.target_layer == "encoder.layers.encoder_layer_1.ln_1" and not result.closed_form
    assert result.raw.shape == (2, CLASSES, 4, 4)
    expected = _slow_maps(vit, images, result.target_layer, _tokens_as_grid(1, 4), method)
    _assert_maps_equal(result, expected)


@pytest.mark.parametrize("method", list(FORMULAS))
@pytest.mark.parametrize(("layer", "closed"), [("norm", True), ("features", False)])
def test_swin_channels_last_maps_equal_autograd(swin, method, layer, closed):
    """At ``norm`` the head is GAP + linear (closed form); at ``features`` a LayerNorm follows (backward pass)."""
    images = _images()
    result = explain_maps(swin, images, method, target_layer=None if layer == "norm" else layer)
    assert result.target_layer == layer and result.closed_form is closed
    assert result.raw.shape == (2, CLASSES, 4, 4)
    _assert_maps_equal(result, _slow_maps(swin, images, layer, _channels_last_as_grid, method))


@pytest.mark.parametrize("method", list(FORMULAS))
def test_convnext_head_is_not_taken_for_gap_linear_and_maps_equal_autograd(convnext, method):
    """ConvNeXt normalises the pooled vector before its Linear: the general gradient path must run."""
    images = _images()
    result = explain_maps(convnext, images, method)
    assert result.target_layer == "features" and not result.closed_form
    _assert_maps_equal(result, _slow_maps(convnext, images, "features", lambda a: a, method))


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("vit", "encoder.layers.encoder_layer_1.ln_1"),
        ("vit", "encoder.layers.encoder_layer_0.ln_1"),
        ("vit", "encoder.layers.encoder_layer_0"),
        ("swin", "norm"),
        ("swin", "features"),
        ("tokens", "block"),
    ],
)
@pytest.mark.parametrize("gradients", [True, False])
def test_recording_leaves_the_predictions_unchanged(vit, swin, name, layer, gradients):
    """The layer's own layout is rebuilt from the grid: class token first, patches in their own order."""
    torch.manual_seed(3)
    model = {"vit": vit, "swin": swin, "tokens": TokenNet(2, patch_info=True).double()}[name]
    images = _images()
    with torch.no_grad():
        plain = model(images)
    record = record_forward(model, images, TargetLayer(layer), gradients=gradients)
    assert record.activation.ndim == 4 and record.activation.requires_grad is gradients
    torch.testing.assert_close(record.logits.detach(), plain, rtol=1e-10, atol=1e-12)


def test_cam_on_a_vit_is_refused_with_the_methods_that_work(vit):
    with pytest.raises(BadInputError, match="use gradcam or gradcampp"):
        explain_maps(vit, _images(), "cam")


def test_vit_at_another_input_size_is_refused_in_one_sentence(vit):
    with pytest.raises(BadInputError, match="exactly 32 x 32 pixels.*not 48 x 48") as info:
        explain_maps(vit, _images(48), "gradcam")
    assert "\n" not in str(info.value)


def test_tokens_that_form_no_grid_without_patch_info_are_refused():
    torch.manual_seed(4)
    model = TokenNet(2, patch_info=False).double()  # 2 + 16 tokens: 17 is no square, nor 18
    with pytest.raises(BadInputError, match="18 tokens.*patch_size"):
        explain_maps(model, _images(), "gradcam", target_layer="block")


@pytest.mark.parametrize(("extra", "patch_info"), [(2, True), (0, False), (1, False)])
def test_leading_tokens_are_found_from_the_patch_size_or_the_square_rule(extra, patch_info):
    torch.manual_seed(4)
    model = TokenNet(extra, patch_info).double()
    images = _images()
    result = explain_maps(model, images, "gradcam", target_layer="block")
    assert not result.closed_form
    _assert_maps_equal(result, _slow_maps(model, images, "block", _tokens_as_grid(extra, 4), "gradcam"))


def test_layout_rules_on_shapes_of_real_networks():
    # Swin-T at 224 px: (N, 7, 7, 768) is channels-last, and so is a stage at 56 x 56 with 96 channels.
    assert map_layout((1, 7, 7, 768), (224, 224), 768).kind == "channels_last"
    assert map_layout((1, 56, 56, 96), (224, 224), 768).kind == "channels_last"
    # ConvNeXt, ResNet: channels-first, also at a layer narrower than the head.
    assert map_layout((1, 768, 7, 7), (224, 224), 768).kind == "grid"
    assert map_layout((1, 256, 14, 14), (224, 224), 512).kind == "grid"
    # Both readings fit the image: channels-first unless the last side is the head's width.
    assert map_layout((1, 6, 6, 5), (32, 32), None).kind == "grid"
    assert map_layout((1, 6, 6, 5), (32, 32), 5).kind == "channels_last"
    assert map_layout((1, 5, 6, 5), (32, 32), 5).kind == "grid"
    # ViT-B/16: 197 tokens are a class token and 14 x 14 patches, with or without the patch size.
    assert token_layout((1, 197, 768), (224, 224), (16, 16), "x") == token_layout((1, 197, 768), (224, 224), None, "x")
    layout = token_layout((1, 197, 768), (224, 224), None, "x")
    assert (layout.leading, layout.height, layout.width) == (1, 14, 14)
    # A non-square image without patch info: 1 + 4 x 6 tokens for 32 x 48 pixels.
    layout = token_layout((1, 25, 8), (32, 48), None, "x")
    assert (layout.leading, layout.height, layout.width) == (1, 4, 6)


def test_target_layers_of_the_transformers(vit, swin, convnext):
    assert find_target_layer(vit).describe() == "encoder.layers.encoder_layer_1.ln_1"
    assert find_target_layer(swin).describe() == "norm"
    assert find_target_layer(convnext).describe() == "features"


def test_explaining_a_vit_run_at_another_size_is_refused_before_the_model_is_built(tmp_path: Path):
    """The run's meta.json names vit_b_16; its weights file is never read, so a placeholder will do."""
    from typer.testing import CliRunner

    from iconolens.cli import app

    run = tmp_path / "run"
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    save_dataset_json(Dataset((Sample("a", image, ("x",), split="test"),), ("x", "y")), run / "dataset.json")
    (run / "model").mkdir()
    (run / "model" / "meta.json").write_text(json.dumps(ModelMeta(("x", "y"), "vit_b_16").to_json()))
    (run / "model" / "weights.pt").write_bytes(b"")
    result = CliRunner().invoke(app, ["explain", "--run", str(run), "--methods", "gradcam", "--image-size", "448"])
    assert result.exit_code != 0 and isinstance(result.exception, BadInputError)
    assert "vit_b_16 classifier takes images of exactly 224 pixels only" in str(result.exception)


def test_vit_eigencam_is_the_projection_of_the_patch_grid(vit):
    images = _images()
    result = explain_maps(vit, images, "eigencam")
    captured = {}
    handle = module_named(vit, result.target_layer).register_forward_hook(lambda m, a, out: captured.update(out=out))
    with torch.no_grad():
        vit(images)
    handle.remove()
    grid = _tokens_as_grid(1, 4)(captured["out"])
    for n in range(len(images)):
        matrix = grid[n].reshape(grid.shape[1], -1).T.numpy()
        _, _, vt = __import__("numpy").linalg.svd(matrix, full_matrices=False)
        projection = matrix @ vt[0]
        projection = -projection if projection.sum() < 0 else projection
        torch.testing.assert_close(result.raw[n, 0].flatten(), torch.from_numpy(projection), rtol=1e-7, atol=1e-9)


def test_vit_scorecam_masks_the_image_with_each_patch_channel(vit):
    images = _images(count=1)
    result = explain_maps(vit, images, "scorecam", classes=[2])
    captured = {}
    layer = result.target_layer
    handle = module_named(vit, layer).register_forward_hook(lambda m, a, out: captured.update(out=out))
    with torch.no_grad():
        vit(images)
    handle.remove()
    grid = _tokens_as_grid(1, 4)(captured["out"])[0]
    with torch.no_grad():
        baseline = float(torch.softmax(vit(torch.zeros_like(images)), dim=1)[0, 2])
        expected = torch.zeros((4, 4), dtype=torch.float64)
        for k in range(grid.shape[0]):
            up = nn.functional.interpolate(grid[k][None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
            mask = (up - up.min()) / (up.max() - up.min())
            expected += (float(torch.softmax(vit(images * mask), dim=1)[0, 2]) - baseline) * grid[k]
    expected = torch.relu(expected)
    assert float(expected.max()) > 0
    torch.testing.assert_close(result.raw[0, 0], expected, rtol=1e-7, atol=1e-9 * float(expected.max()))


def test_vit_ablationcam_equals_zeroing_each_patch_channel(vit):
    images = _images(count=1)
    result = explain_maps(vit, images, "ablationcam", classes=[1, 3])
    layer = module_named(vit, result.target_layer)
    captured = {}
    handle = layer.register_forward_hook(lambda m, a, out: captured.update(out=out))
    with torch.no_grad():
        logits = vit(images)
    handle.remove()
    tokens = captured["out"]
    grid = _tokens_as_grid(1, 4)(tokens)[0]
    expected = torch.zeros((2, 4, 4), dtype=torch.float64)
    for k in range(tokens.shape[-1]):
        ablated = tokens.clone()
        ablated[:, 1:, k] = 0  # the patch tokens' channel k; the class token is left as it was
        handle = layer.register_forward_hook(lambda m, a, out: ablated)
        with torch.no_grad():
            scores = vit(images)
        handle.remove()
        for row, cls in enumerate((1, 3)):
            drop = float(logits[0, cls] - scores[0, cls])
            expected[row] += drop / float(logits[0, cls]) * grid[k]
    expected = torch.relu(expected)
    assert float(expected.max()) > 0
    torch.testing.assert_close(result.raw[0], expected, rtol=1e-7, atol=1e-9 * float(expected.max()))


def test_swin_fused_layercam_reads_channels_last_stages():
    # 24 channels on an 8 x 8 first stage: a shape that cannot be read as channels-first (8 x 8 x 8 could).
    torch.manual_seed(3)
    swin = SwinTransformer(
        patch_size=[4, 4], embed_dim=24, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2], num_classes=CLASSES
    )
    nn.init.normal_(swin.head.weight)
    swin = swin.double().eval()
    images = _images()
    result = explain_maps(swin, images, "layercam_fused", fuse_layers=["features.1", "features.3"])
    outputs = {}
    handles = [
        module_named(swin, name).register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out))
        for name in ("features.1", "features.3")
    ]
    logits = swin(images)
    for handle in handles:
        handle.remove()
    fine = _channels_last_as_grid(outputs["features.1"]).shape[-2:]
    expected = []
    for cls in range(CLASSES):
        fused = None
        for name in ("features.1", "features.3"):
            (gradient,) = torch.autograd.grad(logits[:, cls].sum(), outputs[name], retain_graph=True)
            stage = _layercam(_channels_last_as_grid(outputs[name].detach()), _channels_last_as_grid(gradient))
            peak = stage.amax(dim=(1, 2), keepdim=True)
            scaled = torch.tanh(2 * stage / torch.where(peak > 0, peak, 1))
            scaled = nn.functional.interpolate(scaled[:, None], size=tuple(fine), mode="bilinear", align_corners=False)[:, 0]
            fused = scaled if fused is None else torch.maximum(fused, scaled)
        expected.append(fused)
    expected = torch.stack(expected, dim=1)
    assert expected.amax() > 0
    torch.testing.assert_close(result.raw, expected, rtol=1e-7, atol=1e-9)
