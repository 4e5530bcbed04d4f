"""Small random networks in float64, so fast paths and direct formulas can be compared to 1e-10."""

from __future__ import annotations

import pytest
import torch
from torch import nn

CLASSES = 5


class Body(nn.Sequential):
    """Two convolutions; the second halves the resolution. Output: 6 maps."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )


class GapLinearNet(nn.Module):
    """Global average pooling then one linear layer: the closed-form case."""

    def __init__(self) -> None:
        super().__init__()
        self.body = Body()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, CLASSES)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MlpHeadNet(GapLinearNet):
    """GAP -> Linear -> ReLU -> Linear: pooled, but not linear in the pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, CLASSES))


class FlattenNet(nn.Module):
    """Flatten + linear: every position has its own weight, so gradients vary over positions."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.body = Body()
        self.fc = nn.Linear(6 * (size // 2) ** 2, CLASSES)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _make(cls, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return cls().double()


@pytest.fixture
def gap_net() -> GapLinearNet:
    return _make(GapLinearNet, 1)


@pytest.fixture
def mlp_net() -> MlpHeadNet:
    return _make(MlpHeadNet, 2)


@pytest.fixture
def flatten_net() -> FlattenNet:
    return _make(FlattenNet, 3)


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randn((3, 3, 8, 8), generator=generator, dtype=torch.float64)
