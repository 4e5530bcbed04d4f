"""Images become the tensors their checkpoint's preprocessing describes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from iconolens.models.meta import ModelMeta
from iconolens.models.transforms import image_to_tensor


def test_constant_image_is_normalised_per_channel():
    image = Image.new("RGB", (50, 30), (255, 0, 51))
    meta = ModelMeta(("a", "b"), "resnet18", input_size=16, mean=(0.5, 0.25, 0.2), std=(0.5, 0.25, 0.1))
    tensor = image_to_tensor(image, meta)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    expected = [(1.0 - 0.5) / 0.5, (0.0 - 0.25) / 0.25, (0.2 - 0.2) / 0.1]
    for channel, value in enumerate(expected):
        assert torch.allclose(tensor[channel], torch.full((16, 16), value), atol=1e-6)


def test_resize_keeps_left_and_right_apart():
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, 20:] = 255  # right half white
    meta = ModelMeta(("a",), "resnet18", input_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    tensor = image_to_tensor(Image.fromarray(array), meta)
    assert tensor[:, :, :3].max() == pytest.approx(0.0)
    assert tensor[:, :, 5:].min() == pytest.approx(1.0)
