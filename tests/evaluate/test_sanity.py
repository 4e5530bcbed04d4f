"""The parameter randomisation test: its measures, its randomised models, its verdicts and its command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from torch import nn

from iconolens.evaluate.randomisation import RandomisedModels, Stage, randomisation_stages, reinitialise
from iconolens.evaluate.sanity import (
    MEASURES,
    MapMethod,
    compare_maps,
    edge_map,
    parameter_randomisation_test,
)
from iconolens.evaluate.similarity import gaussian_window, hog, hog_similarity, spearman, ssim

torch.set_num_threads(1)
SIZE = 32
COLOURS = 3


class ToyNet(nn.Module):
    """Convolutions with batch norm, then global average pooling and one linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, COLOURS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def coloured_squares(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise with one bright 8 x 8 square anywhere; the class is the square's colour channel."""
    labels = torch.randint(0, COLOURS, (count,), generator=generator)
    images = 0.3 * torch.randn((count, 3, SIZE, SIZE), generator=generator)
    masks = torch.zeros((count, SIZE, SIZE), dtype=torch.bool)
    for i, colour in enumerate(labels.tolist()):
        row, col = torch.randint(0, SIZE - 8, (2,), generator=generator).tolist()
        images[i, colour, row: row + 8, col: col + 8] += 2.0
        masks[i, row: row + 8, col: col + 8] = True
    return images, labels, masks


@pytest.fixture(scope="module")
def trained() -> tuple[ToyNet, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A toy model trained for 60 steps until it names every square's colour, and 12 test images."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ToyNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        images, labels, _ = coloured_squares(32, generator)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    images, labels, masks = coloured_squares(12, generator)
    with torch.no_grad():
        assert (model(images).argmax(dim=1) == labels).all()
    return model, images, labels, masks


EDGES = MapMethod("sobel", edge_map)


# --- measures ---------------------------------------------------------------------------------------


def slow_ssim(a: np.ndarray, b: np.ndarray, size: int, data_range: float = 1.0) -> float:
    """Wang et al.'s formula window by window, with explicit sums."""
    g = gaussian_window(size)
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            x, y = a[i: i + size, j: j + size], b[i: i + size, j: j + size]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
            cov = (w * (x - mx) * (y - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape,window", [((15, 13), 11), ((7, 9), 7)])
def test_ssim_equals_the_direct_formula(rng, shape, window):
    a = rng.random((2, *shape))
    b = np.clip(a + 0.3 * rng.standard_normal(a.shape), 0, 1)
    fast = ssim(a, b)
    assert fast == pytest.approx([slow_ssim(a[i], b[i], window) for i in range(2)], abs=1e-12)
    assert np.allclose(ssim(a, a), 1.0, atol=1e-12)
    assert (fast < 0.95).all()  # the noisy copy is not mistaken for the map


def test_spearman_equals_scipy_with_ties_and_constant_maps(rng):
    a = rng.integers(0, 5, (3, 6, 7)).astype(float)  # many ties
    b = a + rng.integers(0, 3, a.shape)
    ours = spearman(a, b)
    assert ours == pytest.approx([spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)], abs=1e-12)
    flat = np.zeros((1, 6, 7))
    assert spearman(flat, a[:1])[0] == 0.0
    assert spearman(flat, flat + 3)[0] == 1.0


def test_hog_bins_by_orientation_and_ignores_scale(rng):
    rows = np.zeros((1, 16, 16))
    rows[:, 8:] = 1.0  # a horizontal edge: vertical gradient, 90 degrees, the centre of bin 4 of 9
    cells = hog(rows, cell=4, block=1).reshape(-1, 9)
    voting = cells[cells.sum(axis=1) > 0]
    assert len(voting) == 8  # rows 7 and 8 see the step: two rows of four cells
    assert np.allclose(voting[:, 4], 1.0) and np.allclose(np.delete(voting, 4, axis=1), 0.0)
    maps = rng.random((2, 24, 24))
    assert hog_similarity(maps, 3 * maps) == pytest.approx([1.0, 1.0])
    assert hog_similarity(rows, rows.transpose(0, 2, 1))[0] < 0.2  # a vertical edge is another layout


# --- randomised models --------------------------------------------------------------------------------


def test_stages_run_from_the_head_to_the_input():
    from iconolens.models.backbones import build_classifier

    assert [s.name for s in randomisation_stages(ToyNet())] == ["fc", "block2", "block1", "conv1+bn1"]
    resnet = build_classifier("resnet18", 3, pretrained=False)
    assert [s.name for s in randomisation_stages(resnet)] == ["fc", "layer4", "layer3", "layer2", "layer1",
                                                              "conv1+bn1"]
    mobilenet = [s.name for s in randomisation_stages(build_classifier("mobilenet_v2", 3, pretrained=False))]
    assert mobilenet == ["classifier", *(f"features.{i}" for i in range(18, -1, -1))]


def test_vision_transformer_blocks_are_stages_and_its_embeddings_go_with_the_input():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16,
                            num_classes=3)
    with torch.no_grad():
        vit.class_token.normal_()  # as if learned (a fresh one is zeros)
    stages = randomisation_stages(vit)
    assert [s.name for s in stages] == [
        "heads", "encoder.layers.encoder_layer_1+encoder.ln", "encoder.layers.encoder_layer_0",
        "conv_proj+class_token+encoder.pos_embedding",
    ]
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    after = RandomisedModels(vit, stages, seed=0).with_randomised([3]).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding"}


def test_randomised_copies_change_only_their_stages():
    torch.manual_seed(0)
    model = ToyNet()
    with torch.no_grad():
        model.bn1.running_mean.fill_(0.7)  # as if learned
    stages = randomisation_stages(model)
    copies = RandomisedModels(model, stages, seed=3)
    original = {k: v.clone() for k, v in model.state_dict().items()}

    def changed(positions):
        state = copies.with_randomised(positions).state_dict()
        return {k.split(".")[0] for k in state if not torch.equal(state[k], original[k])}

    assert changed([0]) == {"fc"}
    assert changed([0, 1]) == {"fc", "block2"}
    assert changed([1]) == {"block2"}
    randomised_bn = copies.with_randomised([3]).bn1
    assert torch.equal(randomised_bn.running_mean, torch.zeros(8))
    assert torch.equal(randomised_bn.running_var, torch.ones(8))
    assert changed([]) == set()


def test_reinitialise_is_seeded_and_leaves_the_global_generator_alone():
    a, b, c = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)
    state = torch.get_rng_state()
    reinitialise([a], 5)
    reinitialise([b], 5)
    reinitialise([c], 6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    twins = [nn.Linear(4, 3), nn.Linear(4, 3)]
    reinitialise(twins, 5)
    assert not torch.equal(twins[0].weight, twins[1].weight)  # one stream for a stage, not one per layer


# --- the test itself --------------------------------------------------------------------------------------


def test_gradcam_falls_while_an_edge_detector_stays(trained):
    model, images, labels, masks = trained
    result = parameter_randomisation_test(model, images, ["gradcam", EDGES], seed=0)
    assert result.classes == tuple(labels.tolist())
    gradcam = explain_gradcam(model, images, labels)
    hits = [bool(masks[i].flatten()[gradcam[i].flatten().argmax()]) for i in range(len(images))]
    assert all(hits)  # the trained model's map points at the square: there is something to lose
    final = result.fully_randomised_spearman()
    assert final["sobel"] > 0.99
    assert final["gradcam"] < 0.5
    assert result.flagged == ("sobel",)
    assert result.flags == (("sobel barely changes when the weights are randomised (Spearman 1.00 with every "
                             "stage randomised): it does not depend on what the model learned"),)
    means = result.means("cascading")
    assert means.shape == (2, 4, len(MEASURES))
    assert np.allclose(means[1], 1.0)  # every measure of a model-blind map is 1 at every step
    # Randomising the head alone is the first cascading step, with the same random weights.
    assert np.array_equal(result.independent[:, 0], result.cascading[:, 0])


def explain_gradcam(model, images, labels):
    from iconolens.explain import explain_maps, normalise_maps

    raw = explain_maps(model, images, "gradcam").raw
    return normalise_maps(raw, (SIZE, SIZE))[torch.arange(len(labels)), labels]


def test_the_users_model_is_untouched(trained):
    model, images, _, _ = trained
    model.train()
    model.block1.eval()  # a mixture of modes must come back as it was
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        parameter_randomisation_test(model, images[:4], ["gradcam", "vbp"], seed=1, independent=False)
        assert [m.training for m in model.modules()] == modes
        after = model.state_dict()
        assert all(torch.equal(after[k], v) for k, v in state.items())
    finally:
        model.eval()


def test_same_seed_same_numbers_other_seed_other_weights(trained):
    model, images, _, _ = trained

    def run(seed):
        return parameter_randomisation_test(model, images[:4], ["gradcam"], seed=seed, independent=False)

    first, again, other = run(4), run(4), run(5)
    assert first.table() == again.table()
    assert not np.array_equal(first.cascading, other.cascading)


def test_bad_input_is_one_sentence(trained):
    from iconolens.errors import BadInputError

    model, images, _, _ = trained
    with pytest.raises(BadInputError, match="unknown saliency method 'lime'"):
        parameter_randomisation_test(model, images, ["gradcam", "lime"])
    with pytest.raises(BadInputError, match="shaped"):
        parameter_randomisation_test(model, images[:, :1], ["gradcam"])
    wrong = MapMethod("wrong", lambda model, batch, classes: torch.zeros(len(batch), 2, 4, 4))
    with pytest.raises(BadInputError, match=r"method 'wrong' returned maps shaped \(8, 2, 4, 4\)"):
        parameter_randomisation_test(model, images, [wrong])
    with pytest.raises(BadInputError, match="'nowhere', which is not a module"):
        parameter_randomisation_test(model, images, ["gradcam"], stages=[Stage("x", ("nowhere",))])


def test_falls_at_is_where_the_cascade_stays_below_the_threshold():
    from iconolens.evaluate.sanity import SanityResult

    stages = tuple(Stage(name, (name,)) for name in ("fc", "b3", "b2", "b1"))
    spearman_means = np.array([[0.9, 0.3, 0.7, 0.2], [0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.0, 0.5]])
    cascading = np.zeros((3, 4, len(MEASURES), 2))
    cascading[:, :, MEASURES.index("spearman")] = spearman_means[:, :, None]
    result = SanityResult(("a", "b", "c"), stages, (0, 0), cascading, None, 0.5)
    assert result.falls_at() == {"a": "b1", "b": None, "c": "fc"}
    assert result.fully_randomised_spearman() == pytest.approx({"a": 0.2, "b": 0.6, "c": 0.5})


def test_compare_maps_resizes_both_maps_to_the_image():
    small = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    values = compare_maps(small, -small, (32, 32))
    assert values[0, MEASURES.index("spearman")] == pytest.approx(-1.0)
    assert values[0, MEASURES.index("spearman_abs")] == pytest.approx(1.0, abs=0.05)  # |x| of mirrored maps


# --- the command ----------------------------------------------------------------------------------------

CLASSES = ("Peter", "Paul", "Mary")


@pytest.fixture
def checkpoint(saints_checkpoint: Path) -> Path:
    return saints_checkpoint


@pytest.fixture
def run(tmp_path: Path, checkpoint: Path) -> Path:
    from iconolens.data.dataset_json import save_dataset_json
    from iconolens.data.records import Dataset, Sample

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    samples = []
    for i in range(8):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"p{i}", path, (CLASSES[i % 3],), width=50, height=40,
                              split="val" if i < 5 else "train"))
    run = tmp_path / "run"
    save_dataset_json(Dataset(tuple(samples), CLASSES), run / "dataset.json")
    shutil.copytree(checkpoint, run / "model")
    return run


def test_command_writes_tables_curves_and_the_flag(run: Path, run_cli):
    from iconolens.report.html import write_run_report

    code, out, err = run_cli("sanity", "--run", str(run), "--methods", "gradcam,edges", "--images", "3")
    assert code == 0, err
    assert ("edges barely changes when the weights are randomised (Spearman 1.00 with every stage randomised): "
            "it does not depend on what the model learned") in " ".join(out.split())
    folder = run / "sanity"
    for name in ("cascading.csv", "independent.csv", "cascading.png", "independent.png", "summary.json"):
        assert (folder / name).is_file()
    with Image.open(folder / "cascading.png") as picture:
        assert picture.format == "PNG"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["split"] == "val" and len(summary["image_ids"]) == 3
    assert set(summary["image_ids"]) <= {f"p{i}" for i in range(5)}
    lines = (folder / "cascading.csv").read_text().splitlines()
    assert lines[0].startswith("method,step,stage,spearman,spearman_abs,ssim,hog")
    rows = [line.split(",") for line in lines[1:]]
    assert [row[2] for row in rows[:6]] == ["fc", "layer4", "layer3", "layer2", "layer1", "conv1+bn1"]
    final = {row[0]: float(row[3]) for row in rows if row[2] == "conv1+bn1"}
    assert final["edges"] == 1.0
    # The flags are the methods above the threshold in the table (the random ResNet's gradcam may be either).
    assert summary["flagged"] == [m for m in ("gradcam", "edges") if final[m] > summary["flag_threshold"]]
    page = write_run_report(run).read_text()
    assert "Sanity checks" in page and "edges barely changes" in page

    code, _, err = run_cli("sanity", "--run", str(run), "--methods", "edges", "--images", "3", "--no-independent")
    assert code == 0, err
    assert not (folder / "independent.csv").exists()  # no stale table beside a new summary


@pytest.mark.parametrize("args,problem", [
    (["--methods", "gradcam,lime"], "unknown saliency method 'lime'"),
    (["--split", "test"], "no image of the dataset is in split 'test'"),
    ([], "the run has no trained model yet; make one with `iconolens train --run "),
    (["--device", "npu"], "unknown device 'npu'"),
])
def test_command_bad_input_is_one_sentence(run: Path, run_cli, args, problem):
    if "no trained model" in problem:
        shutil.rmtree(run / "model")
    code, _, err = run_cli("sanity", "--run", str(run), *args)
    assert code == 2
    assert problem in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
