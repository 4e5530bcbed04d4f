"""Every command that uses a run's classifier answers a run without one alike: which command makes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Box, Dataset, Sample
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory

SAINTS = ("Peter", "Paul", "Mary")  # the classes of the shared saints_checkpoint

COMMANDS = [
    ["explain", "--methods", "gradcam"],
    ["explain", "--methods", "gradcam", "--image-size", "48"],
    ["sanity", "--methods", "gradcam", "--images", "1"],
    ["evaluate-classifier", "--split", "test"],
    ["evaluate", "--faithfulness-images", "1", "--steps", "2"],
]


@pytest.fixture
def run(tmp_path: Path) -> RunDirectory:
    """Three labelled images with figure boxes and stored 'good' maps, and no model/ yet."""
    rundir = RunDirectory(tmp_path / "run")
    rng = np.random.default_rng(0)
    samples = []
    for i, (cls, split) in enumerate(zip(SAINTS, ("train", "val", "test"))):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"p{i}", path, (cls,), (Box(5, 6, 30, 35, cls),), width=50, height=40, split=split))
    save_dataset_json(Dataset(tuple(samples), SAINTS), rundir.dataset_json)
    store = MapStore(rundir.maps_dir("good"))
    store.initialise(list(SAINTS), "good", {})
    for sample in samples:
        store.write(sample.id, np.ones((len(SAINTS), 7, 7), dtype=np.float32), np.full(len(SAINTS), 1 / 3))
    return rundir


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_a_run_without_a_model_names_the_command_that_trains_one(run_cli, run, args):
    code, out, err = run_cli(args[0], "--run", str(run.root), *args[1:])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.strip() == (f"error: {run.model_dir}: the run has no trained model yet; make one with "
                           f"`iconolens train --run {run.root}`")
    assert not run.metrics_dir.exists() and not run.sanity_dir.exists()


def test_an_interrupted_training_is_no_model_yet_and_a_trained_one_is_used(run_cli, run, saints_checkpoint):
    run.model_dir.mkdir()
    (run.model_dir / "training_state.pt").write_bytes(b"state of an interrupted training")
    code, _, err = run_cli("explain", "--run", str(run.root), "--methods", "gradcam")
    assert code == 2 and "the run has no trained model yet" in err
    shutil.rmtree(run.model_dir)
    shutil.copytree(saints_checkpoint, run.model_dir)
    code, _, err = run_cli("explain", "--run", str(run.root), "--methods", "gradcam")
    assert code == 0, err
