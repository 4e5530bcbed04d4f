"""The Ray engine of the explain stage: the same bytes as in process, through crashed workers and a killed driver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from iconolens.cli import app
from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Dataset, Sample
from iconolens.errors import BadInputError
from iconolens.explain import ray_engine
from iconolens.explain.collection import ExplainSettings, explain_run
from iconolens.explain.ray_engine import ExplainActor, explain_run_on_ray
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory

CLASSES = ("Peter", "Paul", "Mary")
METHODS = ("gradcam", "smoothgradcampp")
IMAGES = 7  # with batches of 2: three full batches and a short one
SETTINGS = ExplainSettings(batch_size=2, n=2, workers=0)


def make_run(root: Path, checkpoint: Path, images: int = IMAGES) -> RunDirectory:
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir(parents=True)
    samples = []
    for i in range(images):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"p{i}", path, (CLASSES[i % 3],), split="test"))
    broken = folder / "broken.jpg"
    broken.write_bytes(b"not a picture")
    samples.insert(3, Sample("broken", broken, ("Paul",), split="test"))
    run = root / "run"
    save_dataset_json(Dataset(tuple(samples), CLASSES), run / "dataset.json")
    shutil.copytree(checkpoint, run / "model")
    return RunDirectory(run)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, saints_checkpoint: Path) -> dict[tuple[str, str], bytes]:
    """The .npz bytes the in-process engine writes, per (method, image), with one thread as on each one-CPU
    actor: the last bits of a convolution depend on how many threads share it."""
    run = make_run(tmp_path_factory.mktemp("inprocess"), saints_checkpoint)
    explain_in_one_thread(run, METHODS, SETTINGS)
    return map_bytes(run)


def explain_in_one_thread(run: RunDirectory, methods, settings: ExplainSettings) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        explain_run(run, methods, settings=settings)
    finally:
        torch.set_num_threads(before)


def map_bytes(run: RunDirectory) -> dict[tuple[str, str], bytes]:
    out = {}
    for method in METHODS:
        store = MapStore(run.maps_dir(method))
        for i in range(IMAGES):
            if store.has(f"p{i}"):
                out[method, f"p{i}"] = store.path_for(f"p{i}").read_bytes()
    return out


def assert_complete_and_identical(run: RunDirectory, reference: dict[tuple[str, str], bytes]) -> None:
    assert len(reference) == IMAGES * len(METHODS)
    got = map_bytes(run)
    assert sorted(got) == sorted(reference)
    for key, data in reference.items():
        assert got[key] == data, f"{key} differs from the in-process engine"
    for method in METHODS:
        store = MapStore(run.maps_dir(method))
        assert sorted(store.sample_ids()) == [f"p{i}" for i in range(IMAGES)]  # every file loads
        assert not list(store.directory.glob("*.tmp*")) and not list(store.directory.glob(".*"))


def test_ray_maps_are_byte_identical_to_in_process(tmp_path, saints_checkpoint, reference, local_ray):
    run = make_run(tmp_path, saints_checkpoint)
    outcome = explain_run_on_ray(run, METHODS, settings=SETTINGS)
    assert outcome.written == {m: IMAGES for m in METHODS}
    assert outcome.done_before == {m: 0 for m in METHODS}
    assert [p["id"] for p in outcome.problems] == ["broken"]
    assert (run.maps_root / "problems.json").is_file()
    assert_complete_and_identical(run, reference)
    again = explain_run_on_ray(run, METHODS, settings=SETTINGS)
    assert again.written == {m: 0 for m in METHODS} and again.done_before == {m: IMAGES for m in METHODS}


def test_a_worker_killed_mid_run_is_restarted_and_every_image_written_once(
    tmp_path, saints_checkpoint, reference, local_ray, monkeypatch, crashing_actor
):
    flag = tmp_path / "crashed"
    monkeypatch.setattr(ray_engine, "ExplainActor", crashing_actor(ExplainActor, flag))
    run = make_run(tmp_path, saints_checkpoint)
    outcome = explain_run_on_ray(run, METHODS, settings=SETTINGS, workers=1)
    assert flag.is_file(), "the worker did not crash, so nothing was tested"
    assert int(flag.read_text()) != os.getpid()
    assert outcome.written == {m: IMAGES for m in METHODS}
    assert [p["id"] for p in outcome.problems] == ["broken"]
    assert_complete_and_identical(run, reference)


DRIVER = """
import sys
from iconolens.explain.collection import ExplainSettings
from iconolens.explain.ray_engine import explain_run_on_ray
from iconolens.run import RunDirectory
explain_run_on_ray(RunDirectory(sys.argv[1]), {methods!r}, settings=ExplainSettings(batch_size=1, n=2, workers=0))
"""


def test_a_killed_driver_leaves_whole_files_and_the_rerun_completes(tmp_path, saints_checkpoint, local_ray):
    """The subprocess starts its own local Ray (none is running in it), so this covers that path too."""
    methods = ("gradcam",)
    fresh = make_run(tmp_path / "fresh", saints_checkpoint, images=IMAGES)
    explain_in_one_thread(fresh, methods, ExplainSettings(batch_size=1, workers=0))
    run = make_run(tmp_path / "killed", saints_checkpoint, images=IMAGES)
    store = MapStore(run.maps_dir("gradcam"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER.format(methods=methods), str(run.root)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if store.directory.is_dir() and any(store.directory.glob("*.npz")):
            break
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray it started, with no chance to clean up
    process.wait()
    done = len(list(store.directory.glob("*.npz")))
    assert done > 0, "the driver was killed before it wrote a map"
    outcome = explain_run_on_ray(run, methods, settings=ExplainSettings(batch_size=1, workers=0))
    assert outcome.done_before["gradcam"] + outcome.written["gradcam"] == IMAGES
    assert outcome.done_before["gradcam"] >= done
    reference = MapStore(fresh.maps_dir("gradcam"))
    for i in range(IMAGES):
        assert store.path_for(f"p{i}").read_bytes() == reference.path_for(f"p{i}").read_bytes()
    assert sorted(store.sample_ids()) == [f"p{i}" for i in range(IMAGES)]


def test_cli_engine_ray_writes_the_same_maps(tmp_path, saints_checkpoint, reference, local_ray):
    run = make_run(tmp_path, saints_checkpoint)
    result = CliRunner().invoke(app, [
        "explain", "--run", str(run.root), "--methods", ",".join(METHODS), "--batch-size", "2", "--n", "2",
        "--workers", "0", "--engine", "ray",
    ])
    assert result.exit_code == 0, result.output
    assert f"gradcam: {IMAGES} images written" in result.output
    assert_complete_and_identical(run, reference)


def test_cli_unknown_engine_is_one_sentence(tmp_path, saints_checkpoint):
    run = make_run(tmp_path, saints_checkpoint, images=1)
    result = CliRunner().invoke(app, ["explain", "--run", str(run.root), "--engine", "foo"])
    assert result.exit_code != 0
    assert isinstance(result.exception, BadInputError)
    message = str(result.exception)
    assert message.startswith("unknown engine 'foo'") and "inprocess or ray" in message
    assert len(message.splitlines()) == 1 and message.count(". ") == 0
    assert not run.maps_root.exists()


def test_without_ray_the_engine_says_how_to_install_it(tmp_path, saints_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    run = make_run(tmp_path, saints_checkpoint, images=1)
    result = CliRunner().invoke(app, ["explain", "--run", str(run.root), "--engine", "ray"])
    assert isinstance(result.exception, BadInputError)
    assert "pip install 'iconolens[ray]'" in str(result.exception)
    assert not run.maps_root.exists()
