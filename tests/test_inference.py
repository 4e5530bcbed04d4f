"""Batch norms folded into the convolutions before them, checked against the formula and refused where unsafe."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from iconolens.errors import BadInputError
from iconolens.inference import check_precision, fold_batch_norms, network_on


def _with_statistics(norm: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    channels = norm.running_mean.shape[0]
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(channels, generator=generator))
        norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
        norm.weight.copy_(torch.randn(channels, generator=generator))
        norm.bias.copy_(torch.randn(channels, generator=generator))
    return norm


class Residual(nn.Module):
    """The stem's convolution output feeds its batch norm and, unnormalised, a skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = _with_statistics(nn.BatchNorm2d(3), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class Block(nn.Module):
    """Attributes, not a Sequential: the pairing comes from which tensor each layer received."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1 = _with_statistics(nn.BatchNorm2d(4), 2)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 2, 1)
        self.bn2 = _with_statistics(FrozenBatchNorm2d(2), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def _image() -> torch.Tensor:
    return torch.randn((2, 3, 9, 9), generator=torch.Generator().manual_seed(4))


def test_folded_weights_follow_the_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), _with_statistics(nn.BatchNorm2d(4, eps=1e-3), 5)).eval()
    conv, norm = model[0], model[1]
    folded = fold_batch_norms(model, _image()[:1])
    scale = norm.weight / (norm.running_var + 1e-3).sqrt()
    torch.testing.assert_close(folded[0].weight, conv.weight * scale.view(4, 1, 1, 1))
    torch.testing.assert_close(folded[0].bias, (conv.bias - norm.running_mean) * scale + norm.bias)
    assert isinstance(folded[1], nn.Identity)
    assert isinstance(model[1], nn.BatchNorm2d)  # the model given is left as it was
    with torch.no_grad():
        torch.testing.assert_close(folded(_image()), model(_image()), rtol=1e-5, atol=1e-5)


def test_pairs_found_by_the_tensors_they_pass_frozen_ones_too():
    model = Block().eval()
    folded = fold_batch_norms(model, _image()[:1])
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn2, nn.Identity)
    assert folded.conv1.bias is not None  # a convolution without bias gets one
    with torch.no_grad():
        torch.testing.assert_close(folded(_image()), model(_image()), rtol=1e-5, atol=1e-5)


def test_a_convolution_output_used_elsewhere_is_not_folded():
    model = Residual().eval()
    assert fold_batch_norms(model, _image()[:1]) is model


def test_layers_that_maps_are_taken_from_are_kept():
    model = Block().eval()
    folded = fold_batch_norms(model, _image()[:1], keep=["conv2:output"])
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn2, FrozenBatchNorm2d)


def test_a_batch_norm_in_training_statistics_mode_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert fold_batch_norms(model, _image()[:1]) is model


def test_network_on_lays_out_channels_last_and_keeps_the_output():
    model = Block().eval()
    ready = network_on(model, torch.device("cpu"), input_size=9)
    assert ready.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(ready(_image()), model(_image()), rtol=1e-5, atol=1e-5)


def test_unknown_precision():
    assert check_precision("mixed") == "mixed"
    with pytest.raises(BadInputError, match="unknown precision 'fp16'"):
        check_precision("fp16")
