"""Mixed precision and the channels-last layout: the trunk in 16 bits, the head and the maps in float32."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError
from iconolens.explain import cam as cam_formulas
from iconolens.explain.collection import ExplainSettings, explain_run
from iconolens.explain.engine import explain_maps
from iconolens.explain.layers import TargetLayer
from iconolens.explain.recording import record_forward
from iconolens.explain.store import MapStore
from iconolens.inference import half_dtype, network_on
from iconolens.run import RunDirectory

from .conftest import GapLinearNet, MlpHeadNet


def _net(cls, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cls().float().eval()


def _images(count: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn((count, 3, size, size), generator=torch.Generator().manual_seed(5))


def test_trunk_in_bfloat16_head_in_float32():
    net, images = _net(GapLinearNet, 1), _images()
    full = record_forward(net, images, TargetLayer("body"), gradients=False)
    mixed = record_forward(net, images, TargetLayer("body"), gradients=False, half=torch.bfloat16)
    assert mixed.activation.dtype == torch.float32 and mixed.logits.dtype == torch.float32
    # The trunk really ran in bfloat16 (8 bits of mantissa): its features moved, by a bfloat16-sized amount.
    error = (mixed.activation - full.activation).abs().max() / full.activation.abs().max()
    assert 1e-4 < error < 3e-2
    # The head ran in float32 on those features: its logits are the float64 head of the recorded features.
    with torch.no_grad():
        expected = net.double().head(mixed.activation.double())
    torch.testing.assert_close(mixed.logits.double(), expected, rtol=1e-6, atol=1e-7)
    # Autocast is off again afterwards.
    assert not torch.is_autocast_enabled("cpu")


def test_maps_computed_in_float32_from_the_recorded_features():
    net, images = _net(GapLinearNet, 1), _images()
    mixed = explain_maps(net, images, "cam", precision="mixed")
    record = record_forward(net, images, TargetLayer("body"), gradients=False, half=torch.bfloat16)
    by_hand = cam_formulas.cam_from_weight(record.activation, net.fc.weight.detach())
    torch.testing.assert_close(mixed.raw, by_hand, rtol=1e-6, atol=1e-7)


def test_gradient_maps_in_mixed_precision_stay_near_full_precision():
    net, images = _net(MlpHeadNet, 2), _images()
    full = explain_maps(net, images, "gradcampp")
    mixed = explain_maps(net, images, "gradcampp", precision="mixed")
    assert mixed.raw.dtype == torch.float32
    error = (mixed.raw - full.raw).abs().max() / full.raw.abs().max()
    assert 0 < error < 0.05
    torch.testing.assert_close(mixed.scores, full.scores, rtol=0, atol=1e-2)


def test_unknown_precision_is_one_sentence():
    with pytest.raises(BadInputError, match="unknown precision 'half'; choose full or mixed"):
        explain_maps(_net(GapLinearNet, 1), _images(), "cam", precision="half")


def test_half_types_per_device():
    assert half_dtype(torch.device("cpu"), "full") is None
    assert half_dtype(torch.device("cpu"), "mixed") == torch.bfloat16
    assert half_dtype(torch.device("cuda"), "mixed") == torch.float16


def test_channels_last_changes_layout_not_maps():
    net, images = _net(GapLinearNet, 1), _images()
    before = explain_maps(net, images, "gradcam")
    moved = network_on(_net(GapLinearNet, 1), torch.device("cpu"))
    assert moved.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    after = explain_maps(moved, images, "gradcam")
    torch.testing.assert_close(after.raw, before.raw, rtol=1e-5, atol=1e-6)


def _small_run(root: Path, checkpoint: Path) -> RunDirectory:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    samples = []
    for i in range(3):
        path = root / "images" / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 72, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"p{i}", path, ("Peter",), split="test"))
    save_dataset_json(Dataset(tuple(samples), ("Peter", "Paul", "Mary")), root / "run" / "dataset.json")
    shutil.copytree(checkpoint, root / "run" / "model")
    return RunDirectory(root / "run")


def test_a_run_in_mixed_precision_is_recorded_and_not_mixed_with_full(tmp_path, saints_checkpoint):
    full_run = _small_run(tmp_path / "a", saints_checkpoint)
    mixed_run = _small_run(tmp_path / "b", saints_checkpoint)
    settings = ExplainSettings(batch_size=2, workers=0)
    explain_run(full_run, ["gradcam"], settings=settings)
    explain_run(mixed_run, ["gradcam"], settings=ExplainSettings(batch_size=2, workers=0, precision="mixed"))
    full_store, mixed_store = MapStore(full_run.maps_dir("gradcam")), MapStore(mixed_run.maps_dir("gradcam"))
    assert mixed_store.meta()["params"]["precision"] == "mixed"
    assert "precision" not in full_store.meta()["params"]
    for i in range(3):
        a, b = full_store.read(f"p{i}")[0], mixed_store.read(f"p{i}")[0]
        assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()
    with pytest.raises(BadInputError, match=r"other settings \(precision\)"):
        explain_run(mixed_run, ["gradcam"], settings=settings)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_float16_on_cuda_stays_near_full_precision():
    net, images = network_on(_net(MlpHeadNet, 2), torch.device("cuda")), _images().cuda()
    full = explain_maps(net, images, "gradcampp")
    mixed = explain_maps(net, images, "gradcampp", precision="mixed")
    error = (mixed.raw - full.raw).abs().max() / full.raw.abs().max()
    assert error < 0.05
