"""`iconolens explain` and `iconolens overlay` end to end on a tiny run made in the test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from iconolens.cli import app
from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.images import load_image
from iconolens.data.records import Box, Dataset, Sample
from iconolens.explain import explain_maps
from iconolens.explain.store import MapStore
from iconolens.models.transforms import image_to_tensor

CLASSES = ("Peter", "Paul", "Mary")


@pytest.fixture
def checkpoint(saints_checkpoint: Path) -> Path:
    return saints_checkpoint


@pytest.fixture
def run(tmp_path: Path, checkpoint: Path) -> Path:
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    samples = []
    for i in range(3):
        path = images / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
        boxes = (Box(5, 6, 30, 35, CLASSES[i]),)
        samples.append(Sample(f"p{i}", path, (CLASSES[i],), boxes, width=50, height=40, split="test"))
    broken = images / "broken.jpg"
    broken.write_bytes(b"not a picture")
    samples.append(Sample("broken", broken, ("Paul",), split="test"))
    run = tmp_path / "run"
    save_dataset_json(Dataset(tuple(samples), CLASSES), run / "dataset.json")
    shutil.copytree(checkpoint, run / "model")
    return run


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_explain_stores_maps_equal_to_the_library(run: Path):
    result = invoke("explain", "--run", str(run), "--methods", "gradcam,gradcampp", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    from iconolens.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(run / "model")
    batch = torch.stack([image_to_tensor(load_image(run.parent / "images" / f"p{i}.png"), meta) for i in range(3)])
    for method in ("gradcam", "gradcampp"):
        store = MapStore(run / "maps" / method)
        assert store.classes == list(CLASSES)
        assert sorted(store.sample_ids()) == ["p0", "p1", "p2"]
        expected = explain_maps(model, batch, method)
        for i in range(3):
            maps, scores = store.read(f"p{i}")
            assert maps.shape == (3, 2, 2)  # ResNet at 64 px: 2x2 feature maps, all classes
            np.testing.assert_allclose(maps, expected.raw[i].numpy(), rtol=2e-3, atol=1e-3 * float(expected.raw.abs().max()))
            np.testing.assert_allclose(scores, expected.scores[i].numpy(), rtol=1e-5)
    problems = json.loads((run / "maps" / "problems.json").read_text())
    assert [p["id"] for p in problems] == ["broken"]
    assert "broken.jpg" in problems[0]["message"]


def test_rerun_skips_finished_images(run: Path):
    assert invoke("explain", "--run", str(run), "--methods", "cam").exit_code == 0
    store = MapStore(run / "maps" / "cam")
    stamp = store.path_for("p1").stat().st_mtime_ns
    store.path_for("p2").unlink()  # as if interrupted before this image
    result = invoke("explain", "--run", str(run), "--methods", "cam")
    assert result.exit_code == 0
    assert "cam: 1 images written, 2 already done" in result.output
    assert store.path_for("p1").stat().st_mtime_ns == stamp
    assert store.has("p2")


def test_explain_subset_of_classes(run: Path):
    result = invoke("explain", "--run", str(run), "--methods", "cam", "--classes", "Mary,Peter")
    assert result.exit_code == 0, result.output
    store = MapStore(run / "maps" / "cam")
    assert store.classes == ["Mary", "Peter"]
    assert store.read("p0")[0].shape == (2, 2, 2)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--methods", "gradcam,lime"], "unknown method 'lime'"),
        (["--classes", "Judas"], "no class 'Judas'"),
        (["--methods", "smoothgradcampp", "--n", "0"], "at least 1"),
        (["--methods", "smoothgradcampp", "--sigma", "-1"], "sigma must be 0 or more"),
        (["--target-layer", "layer9"], "no layer named 'layer9'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_explain_bad_input_is_one_sentence(run: Path, args, message):
    from iconolens.errors import BadInputError

    result = invoke("explain", "--run", str(run), *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, BadInputError)
    assert message in str(result.exception)
    assert not (run / "maps" / "gradcam").exists()


def test_overlay_writes_pictures(run: Path, tmp_path: Path):
    assert invoke("explain", "--run", str(run), "--methods", "gradcam").exit_code == 0
    out = tmp_path / "overlays"
    result = invoke("overlay", "--run", str(run), "--method", "gradcam", "--images", "p0,p1", "--out", str(out))
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == ["p0.gradcam.Peter.png", "p1.gradcam.Paul.png"]
    picture = np.asarray(Image.open(out / "p0.gradcam.Peter.png"))
    assert picture.shape == (40, 50, 3)
    assert tuple(picture[20, 5]) == (255, 0, 0)  # left edge of the expert box (5, 6, 30, 35)
    bad = invoke("overlay", "--run", str(run), "--method", "gradcam", "--images", "p9", "--out", str(out))
    assert bad.exit_code != 0 and "no image with id 'p9'" in str(bad.exception)


def test_explaining_at_a_larger_input_gives_finer_maps_and_refuses_to_mix_sizes(run: Path):
    result = invoke("explain", "--run", str(run), "--methods", "cam", "--image-size", "128")
    assert result.exit_code == 0, result.output
    store = MapStore(run / "maps" / "cam")
    maps, _ = store.read("p0")
    assert maps.shape == (3, 4, 4)  # ResNet's stride 32 at 128 px, against 2 x 2 at the model's own 64 px
    assert store.meta()["params"]["input_size"] == 128
    again = invoke("explain", "--run", str(run), "--methods", "cam")
    assert again.exit_code != 0 and "other settings (input_size)" in str(again.exception)


def test_help_lists_every_method_and_every_new_method_runs_from_the_cli(run: Path):
    from iconolens.explain import METHODS

    text = invoke("explain", "--help").output
    flat = " ".join(text.split())
    for method in METHODS:
        assert method in flat, method
    methods = "xgradcam,hirescam,layercam,ablationcam,eigencam,layercam_fused"
    result = invoke("explain", "--run", str(run), "--methods", methods, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    from iconolens.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(run / "model")
    batch = torch.stack([image_to_tensor(load_image(run.parent / "images" / f"p{i}.png"), meta) for i in range(3)])
    for method in methods.split(","):
        expected = explain_maps(model, batch, method).raw
        maps, _ = MapStore(run / "maps" / method).read("p1")
        np.testing.assert_allclose(maps, expected[1].numpy(), rtol=2e-3, atol=1e-3 * float(expected.abs().max()) + 1e-6)


def test_threads_sets_the_pytorch_threads_of_the_command(run: Path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    assert invoke("explain", "--run", str(run), "--methods", "cam", "--threads", "1").exit_code == 0
    assert calls == [1]
    calls.clear()
    assert invoke("explain", "--run", str(run), "--methods", "cam").exit_code == 0
    assert calls == []  # without --threads, PyTorch keeps its own choice
