"""Training-time colour and scale changes: each change does what it says, and training leaves the model's
working size as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from iconolens.detect.augmentation import PaintingAugmentation, luma
from iconolens.detect.training import train_detector
from iconolens.errors import BadInputError

from .test_faster_rcnn import _squares

NONE = dict(brightness=0.0, contrast=0.0, saturation=0.0, grey=0.0)


def _painting() -> torch.Tensor:
    return 0.2 + 0.6 * torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(0))  # no clipping at +-25%


def test_no_change_leaves_the_pixels() -> None:
    x = _painting()
    torch.testing.assert_close(PaintingAugmentation(**NONE).colours(x, np.random.default_rng(0)), x)


def test_grey_is_the_luma_of_each_pixel_in_every_channel() -> None:
    x = _painting()
    out = PaintingAugmentation(**{**NONE, "grey": 1.0}).colours(x, np.random.default_rng(0))
    r, g, b = x[:, 3, 5].tolist()
    assert out[:, 3, 5].tolist() == pytest.approx([0.299 * r + 0.587 * g + 0.114 * b] * 3, abs=1e-6)


def test_saturation_keeps_each_pixels_grey_and_contrast_keeps_the_mean_grey() -> None:
    x = _painting()
    saturated = PaintingAugmentation(**{**NONE, "saturation": 0.2}).colours(x, np.random.default_rng(1))
    assert not torch.allclose(saturated, x)
    torch.testing.assert_close(luma(saturated), luma(x))
    contrasted = PaintingAugmentation(**{**NONE, "contrast": 0.2}).colours(x, np.random.default_rng(2))
    assert not torch.allclose(contrasted, x)
    torch.testing.assert_close(luma(contrasted).mean(), luma(x).mean())


def test_brightness_scales_every_value_by_one_factor_within_its_range() -> None:
    x = _painting()
    out = PaintingAugmentation(**{**NONE, "brightness": 0.25}).colours(x, np.random.default_rng(3))
    ratio = out / x
    assert 0.75 <= float(ratio.min()) and float(ratio.max()) <= 1.25
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0, 0])))


def test_training_at_several_scales_returns_the_model_at_its_working_size(tmp_path: Path) -> None:
    assert PaintingAugmentation(scales=(0.5, 1.0, 1.5)).sizes(64, 80) == ((32, 64, 96), 120)
    model, _ = train_detector(_squares(tmp_path), iterations=2, batch_size=2, seed=0, min_size=64, max_size=64,
                              backbone_weights=False, augmentation=PaintingAugmentation())
    assert tuple(model.transform.min_size) == (64,) and model.transform.max_size == 64


@pytest.mark.parametrize("wrong", [{"brightness": 1.0}, {"grey": 1.5}, {"scales": ()}, {"scales": (0.0, 1.0)}])
def test_impossible_changes_are_refused_in_one_sentence(wrong: dict) -> None:
    with pytest.raises(BadInputError):
        PaintingAugmentation(**wrong)
