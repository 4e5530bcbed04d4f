"""How the viewer copes with a large run: build time, and in chromium the time to the first gallery page, to
filter and sort every image, to turn a page and to open one image with its overlay.

A run of ``--images`` small random paintings (3 classes, figure and attribute boxes, maps of 2 methods at
7 x 7) is made in ``--work``, then ``iconolens.viewer.build.build_viewer`` writes its site and a headless
chromium (Debian's, via Playwright) opens it from file://.

    .venv/bin/python bench/viewer_scale.py --images 10000 --work /tmp/viewer-scale
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.records import Box, Dataset, Sample
from iconolens.explain.store import MapStore
from iconolens.models.meta import ModelMeta
from iconolens.viewer.build import build_viewer

CLASSES = ("Peter", "Paul", "Jerome")


def make_run(root: Path, n: int, side: int) -> None:
    rng = np.random.default_rng(0)
    (root / "collection").mkdir(parents=True)
    samples = []
    for i in range(n):
        path = root / "collection" / f"{i:06d}.jpg"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, quality=80)
        label = CLASSES[i % 3]
        boxes = (Box(10, 10, side // 2, side - 10, label, "figure"),
                 Box(12, side // 2, 40, side // 2 + 28, f"keys - {label}", "attribute"))
        samples.append(Sample(f"{i:06d}", path, (label,), boxes, side, side, "test" if i % 5 == 0 else "train"))
    save_dataset_json(Dataset(tuple(samples), CLASSES, root=root / "collection"), root / "dataset.json")
    (root / "model").mkdir()
    meta = ModelMeta(classes=CLASSES, backbone="resnet18", input_size=224, task="multiclass", mode="off-the-shelf")
    (root / "model" / "meta.json").write_text(json.dumps(meta.to_json()))
    (root / "model" / "weights.pt").write_bytes(b"")
    for method in ("cam", "gradcam"):
        store = MapStore(root / "maps" / method)
        store.initialise(CLASSES, method, {})
        for s in samples:
            store.write(s.id, rng.random((3, 7, 7)).astype(np.float32), rng.dirichlet(np.ones(3)).astype(np.float32))


def browse(site: Path, chromium: str, repeats: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"first page": [], "filter + sort all": [], "next page": [], "open image": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(repeats):
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            start = time.perf_counter()
            page.goto(f"file://{site / 'index.html'}")
            page.wait_for_selector(".card")
            times["first page"].append(time.perf_counter() - start)
            start = time.perf_counter()
            page.evaluate("""() => { document.getElementById('filter-split').value = 'train';
                document.getElementById('sort-key').value = 'm:cam:figure:global_iou';
                document.getElementById('sort-key').dispatchEvent(new Event('change')); }""")
            page.wait_for_function("location.hash.includes('sort=')")
            page.wait_for_selector(".card")
            times["filter + sort all"].append(time.perf_counter() - start)
            start = time.perf_counter()
            page.click("#pager a:has-text('next')")
            page.wait_for_function("document.getElementById('pager').textContent.includes('page 2 of')")
            times["next page"].append(time.perf_counter() - start)
            start = time.perf_counter()
            page.click(".card >> nth=0")
            page.wait_for_selector("#overlay[data-ready]")
            times["open image"].append(time.perf_counter() - start)
            if errors:
                raise SystemExit(f"page errors: {errors}")
            page.close()
        browser.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--work", type=Path, default=Path("/tmp/viewer-scale"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    start = time.perf_counter()
    make_run(args.work, args.images, args.side)
    print(f"run of {args.images} images made in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    page = build_viewer(args.work)
    built = time.perf_counter() - start
    start = time.perf_counter()
    build_viewer(args.work)
    rebuilt = time.perf_counter() - start
    size = sum(p.stat().st_size for p in page.parent.rglob("*") if p.is_file())
    index = sum(p.stat().st_size for p in (page.parent / "data").glob("index-*.js"))
    print(f"build {built:.0f} s ({built / args.images * 1000:.1f} ms per image), rebuild {rebuilt:.0f} s, "
          f"site {size / 1e6:.0f} MB, index {index / 1e6:.1f} MB")
    for name, seconds in browse(page.parent, args.chromium, args.repeats).items():
        print(f"{name}: {seconds * 1000:.0f} ms (median of {args.repeats})")


if __name__ == "__main__":
    main()
