"""A small classifier run made by hand (images, dataset.json, model metadata, maps of two methods) and a real
browser (Debian's chromium driven by Playwright) for the viewer's tests."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Box, Dataset, Sample
from iconolens.explain.store import MapStore
from iconolens.models.meta import ModelMeta

CLASSES = ("Peter", "Paul", "Jerome")


@dataclass
class HandMadeRun:
    root: Path
    dataset: Dataset
    raw: dict[str, dict[str, np.ndarray]]  # method -> sample id -> (C, h, w)
    scores: dict[str, np.ndarray]
    unreadable: str | None


def make_run(root: Path, n_images: int = 6, size: tuple[int, int] = (64, 48), map_size: tuple[int, int] = (5, 4),
             methods: tuple[str, ...] = ("cam", "gradcam"), seed: int = 0, unreadable: bool = True,
             thresholds: tuple[float, ...] = (0.5, 0.5, 0.5)) -> HandMadeRun:
    """``n_images`` random paintings of ``size`` (w, h), split train/test alternately, each showing one or two
    classes with a figure box and an attribute box; random maps of ``map_size`` (w, h); one corrupt file."""
    rng = np.random.default_rng(seed)
    images = root / "collection"
    images.mkdir(parents=True)
    width, height = size
    samples = []
    for i in range(n_images):
        path = images / f"p{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        labels = (CLASSES[i % 3],) if i % 2 else (CLASSES[i % 3], CLASSES[(i + 1) % 3])
        boxes = []
        for k, label in enumerate(labels):
            x0, y0 = 4 + 20 * k, 6
            boxes.append(Box(x0, y0, x0 + 18, y0 + 30, label, "figure"))
            boxes.append(Box(x0 + 2, y0 + 20, x0 + 10, y0 + 28, f"keys - {label}", "attribute"))
        samples.append(Sample(f"p{i:04d}", path, labels, tuple(boxes), width, height,
                              "test" if i % 2 else "train"))
    bad = None
    if unreadable:
        path = images / "broken.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        bad = "broken"
        samples.append(Sample(bad, path, (CLASSES[0],), (), width, height, "test"))
    dataset = Dataset(tuple(samples), CLASSES, multi_label=True, root=images)
    save_dataset_json(dataset, root / "dataset.json")
    model = root / "model"
    model.mkdir()
    meta = ModelMeta(classes=CLASSES, backbone="resnet18", input_size=64, task="multilabel",
                     mode="off-the-shelf", thresholds=thresholds)
    (model / "meta.json").write_text(json.dumps(meta.to_json()))
    (model / "weights.pt").write_bytes(b"")
    raw: dict[str, dict[str, np.ndarray]] = {}
    scores = {s.id: rng.random(len(CLASSES)).astype(np.float32) for s in samples}
    mw, mh = map_size
    for method in methods:
        store = MapStore(root / "maps" / method)
        store.initialise(CLASSES, method, {})
        raw[method] = {}
        for s in samples:
            maps = rng.random((len(CLASSES), mh, mw)).astype(np.float32)
            store.write(s.id, maps, scores[s.id])
            raw[method][s.id] = store.read(s.id)[0]
    return HandMadeRun(root, dataset, raw, scores, bad)


def chromium_executable() -> str | None:
    """The system's chromium (Playwright's own browser download is not used)."""
    given = os.environ.get("ICONOLENS_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless chromium, or a skip saying in one line why there is none."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:  # a browser that cannot start is a reason to skip, said in one line
            pytest.skip(f"chromium at {executable} does not start: {str(exc).splitlines()[0]}")
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh page that records console errors and uncaught exceptions in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda message: tab.errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    context.close()
