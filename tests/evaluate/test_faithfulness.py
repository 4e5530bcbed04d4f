"""Deletion/insertion on toy score functions whose curves are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iconolens.evaluate.faithfulness import blurred_copy, perturbation_curves


def _unchanged_share(image: torch.Tensor, region: torch.Tensor):
    """Score = share of the region's pixels still equal to the original image."""

    def score(batch: torch.Tensor) -> torch.Tensor:
        same = (batch == image[None]).all(dim=1).float()  # (B, H, W)
        return (same * region[None]).sum(dim=(1, 2)) / region.sum()

    return score


def test_uniform_score_gives_straight_lines(rng):
    image = torch.from_numpy(rng.random((3, 10, 10), dtype=np.float32))
    saliency = rng.random((10, 10))
    region = torch.ones(10, 10)
    curves = perturbation_curves(image, saliency, _unchanged_share(image, region), steps=10, batch_size=4)
    expected = np.linspace(0, 1, 11)
    np.testing.assert_allclose(curves.fractions, expected)
    # Every deleted pixel stops equalling the original (a blurred random image differs everywhere).
    np.testing.assert_allclose(curves.deletion, 1 - expected, atol=1e-12)
    np.testing.assert_allclose(curves.insertion, expected, atol=1e-12)
    assert curves.deletion_auc == pytest.approx(0.5)
    assert curves.insertion_auc == pytest.approx(0.5)


def test_map_on_the_evidence_deletes_it_first(rng):
    # The score depends only on the top-left 5x5 quarter (25 of 100 pixels).
    image = torch.from_numpy(rng.random((3, 10, 10), dtype=np.float32))
    region = torch.zeros(10, 10)
    region[:5, :5] = 1
    good = region.numpy() + 0.01 * rng.random((10, 10))  # evidence ranked first
    bad = 1.0 - good  # evidence ranked last
    score = _unchanged_share(image, region)
    good_curves = perturbation_curves(image, good, score, steps=20, batch_size=7)
    bad_curves = perturbation_curves(image, bad, score, steps=20, batch_size=7)
    f = good_curves.fractions
    # Good map: evidence gone linearly over the first quarter, then nothing left.
    np.testing.assert_allclose(good_curves.deletion, np.clip(1 - f / 0.25, 0, 1), atol=1e-12)
    np.testing.assert_allclose(good_curves.insertion, np.clip(f / 0.25, 0, 1), atol=1e-12)
    # Bad map: evidence only touched in the last quarter.
    np.testing.assert_allclose(bad_curves.deletion, np.clip((1 - f) / 0.25, 0, 1), atol=1e-12)
    # Areas by hand: triangle 0.25 * 1 / 2 = 0.125; insertion 1 - 0.125.
    assert good_curves.deletion_auc == pytest.approx(0.125)
    assert good_curves.insertion_auc == pytest.approx(0.875)
    assert bad_curves.deletion_auc == pytest.approx(0.875)
    assert bad_curves.insertion_auc == pytest.approx(0.125)


def test_one_forward_pass_per_batch(rng):
    image = torch.from_numpy(rng.random((3, 8, 8), dtype=np.float32))
    calls: list[int] = []

    def score(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return batch.mean(dim=(1, 2, 3))

    perturbation_curves(image, rng.random((8, 8)), score, steps=50, batch_size=16)
    # 51 steps per curve in batches of 16: 16+16+16+3, for deletion and insertion.
    assert calls == [16, 16, 16, 3, 16, 16, 16, 3]


def test_end_points_are_the_image_and_its_blur(rng):
    image = torch.from_numpy(rng.random((3, 12, 12), dtype=np.float32))
    seen: list[torch.Tensor] = []

    def score(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.clone())
        return torch.zeros(batch.shape[0])

    perturbation_curves(image, rng.random((12, 12)), score, steps=4, batch_size=5, blur_kernel=5, blur_sigma=2.0)
    deletion, insertion = seen
    blurred = blurred_copy(image, 5, 2.0)
    assert torch.equal(deletion[0], image) and torch.equal(deletion[-1], blurred)
    assert torch.equal(insertion[0], blurred) and torch.equal(insertion[-1], image)


def test_blur_of_a_constant_image_is_the_same_constant():
    image = torch.full((3, 20, 20), 0.3)
    torch.testing.assert_close(blurred_copy(image), image)


def test_blur_smooths_towards_the_mean(rng):
    image = torch.from_numpy(rng.random((3, 64, 64), dtype=np.float32))
    blurred = blurred_copy(image)
    assert blurred.std() < 0.2 * image.std()
    torch.testing.assert_close(blurred.mean(), image.mean(), atol=0.02, rtol=0)


def test_saliency_of_the_wrong_size_is_refused(rng):
    image = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="saliency"):
        perturbation_curves(image, np.zeros((4, 4)), lambda b: b.mean(dim=(1, 2, 3)))


class _LeftBrightness(torch.nn.Module):
    """A 'classifier' whose one logit is the brightness of the image's left half (channel 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * x[:, 0, :, : x.shape[3] // 2].mean(dim=(1, 2)))[:, None]


def test_maps_on_the_evidence_are_more_faithful(tmp_path):
    from PIL import Image

    from iconolens.data.records import Sample
    from iconolens.explain.store import MapStore
    from iconolens.models.meta import ModelMeta

    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:, :16] = 255  # bright left half: the evidence; the blur darkens it towards grey
    Image.fromarray(pixels).save(tmp_path / "img.png")
    sample = Sample("img", tmp_path / "img.png", ("bright",), width=32, height=32)
    meta = ModelMeta(classes=("bright",), backbone="none", input_size=32, mean=(0.0, 0.0, 0.0),
                     std=(1.0, 1.0, 1.0), task="multilabel")
    left = np.zeros((1, 4, 4), dtype=np.float32)
    left[0, :, :2] = 1.0
    stores = {}
    for name, maps in (("left", left), ("right", left[:, :, ::-1].copy())):
        stores[name] = MapStore(tmp_path / name)
        stores[name].initialise(["bright"], name, {})
        stores[name].write("img", maps, np.array([0.9], dtype=np.float32))
    stores["absent"] = MapStore(tmp_path / "absent")
    stores["absent"].initialise(["bright"], "absent", {})
    from iconolens.evaluate.faithfulness import faithfulness_areas

    out = faithfulness_areas(_LeftBrightness(), meta, [sample], stores, steps=8, batch_size=9).means()
    assert out["left"]["pairs"] == 1 and out["absent"]["pairs"] == 0 and out["absent"]["skipped"] == 1
    assert np.isnan(out["absent"]["deletion_auc"])
    assert out["left"]["deletion_auc"] < out["right"]["deletion_auc"]
    assert out["left"]["insertion_auc"] > out["right"]["insertion_auc"]
