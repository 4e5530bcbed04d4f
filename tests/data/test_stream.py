"""Images decoded in worker processes: the same tensors, in the same order, and unreadable files reported."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from iconolens.data.images import load_image
from iconolens.data.records import Sample
from iconolens.data.stream import decoded_batches, prepared_ahead
from iconolens.models.transforms import image_to_uint8


@pytest.fixture
def samples(tmp_path):
    out = []
    for i in range(7):
        path = tmp_path / f"p{i}.png"
        Image.new("RGB", (20 + i, 13), (10 * i, 200 - 10 * i, 3 * i)).save(path)
        out.append(Sample(id=f"p{i}", path=path, labels=("a",)))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    out.insert(3, Sample(id="broken", path=broken, labels=("a",)))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_hold_the_readable_images_in_order(samples, workers):
    batches = list(decoded_batches(samples, 16, batch_size=3, workers=workers))
    assert [len(b.samples) + len(b.problems) for b in batches] == [3, 3, 2]
    ids = [s.id for b in batches for s in b.samples]
    assert ids == [s.id for s in samples if s.id != "broken"]
    problems = [p for b in batches for p in b.problems]
    assert [p["id"] for p in problems] == ["broken"] and "broken.jpg" in problems[0]["message"]
    for batch in batches:
        for sample, tensor in zip(batch.samples, batch.images):
            assert tensor.dtype == torch.uint8
            assert torch.equal(tensor, image_to_uint8(load_image(sample.path), 16))


def test_a_batch_of_unreadable_images_only_is_empty_not_an_error(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"")
    (batch,) = decoded_batches([Sample(id="x", path=path, labels=())], 8, batch_size=4)
    assert batch.samples == [] and batch.images.shape == (0, 3, 8, 8) and len(batch.problems) == 1


def _size_of(path):
    return load_image(path).size


@pytest.mark.parametrize("workers", [0, 2])
def test_prepared_ahead_keeps_the_order_and_names_what_could_not_be_prepared(samples, workers):
    prepared = list(prepared_ahead([s.path for s in samples], _size_of, workers=workers))
    assert len(prepared) == len(samples)
    for sample, (value, problem) in zip(samples, prepared):
        if sample.id == "broken":
            assert value is None and "broken.jpg" in problem
        else:
            assert problem is None and value == Image.open(sample.path).size
