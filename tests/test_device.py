"""Choosing the device a network runs on."""

from __future__ import annotations

import pytest
import torch

from iconolens.device import resolve_device
from iconolens.errors import BadInputError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_spelling_is_one_sentence():
    with pytest.raises(BadInputError, match="unknown device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(BadInputError, match="no CUDA device"):
        resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_when_present():
    assert resolve_device("cuda:0") == torch.device("cuda:0")
