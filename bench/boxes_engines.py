"""Boxes from stored maps: the in-process engine against the Ray engine on the same machine, in one run.

A run's stored maps of ``--method`` give boxes by ``--recipe`` (``one-box``: one box around each map's foreground
at its 70th percentile; ``segments``: GrabCut seeded by the map, the costly one) for the first ``--images`` images
that have maps: first ``derive_boxes`` in this process, then ``derive_boxes_on_ray`` with ``--ray`` actors
(starting Ray and the actors included in its time). The script checks that both found the same boxes and prints
the ratio of their throughputs.

    .venv/bin/python bench/boxes_engines.py --run runs/peopleart-instances/run-448 --recipe segments --images 300
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from iconolens.data.dataset_json import load_dataset_json
from iconolens.evaluate.boxes import BoxRecipe, derive_boxes
from iconolens.evaluate.ray_engine import derive_boxes_on_ray
from iconolens.evaluate.segments import SegmentSeeds
from iconolens.explain.store import MapStore
from iconolens.run import RunDirectory

RECIPES = {
    "one-box": BoxRecipe(level="figure", gate=False, percentile=70.0),
    "segments": BoxRecipe(level="figure", gate=False, segments=SegmentSeeds()),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder with stored maps")
    parser.add_argument("--method", default="cam")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="segments")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--ray", type=int, default=2, help="Ray actors")
    args = parser.parse_args()
    run = RunDirectory(args.run)
    store = MapStore(run.maps_dir(args.method))
    dataset = load_dataset_json(run.dataset_json)
    dataset = dataset.with_samples(tuple(s for s in dataset.samples if store.has(s.id))[: args.images])
    recipe = RECIPES[args.recipe]

    start = time.perf_counter()
    local = derive_boxes(dataset, store, recipe, method=args.method)
    local_seconds = time.perf_counter() - start
    start = time.perf_counter()
    remote = derive_boxes_on_ray(dataset, store, recipe, method=args.method, workers=args.ray)
    ray_seconds = time.perf_counter() - start

    same = [b.xyxy for b in local.boxes] == [b.xyxy for b in remote.boxes]
    n = len(dataset)
    print(f"{args.recipe} boxes of {n} images ({len(local.boxes)} boxes), same on both engines: {same}")
    print("| engine | seconds | images/s |")
    print("|---|---|---|")
    print(f"| in process | {local_seconds:.1f} | {n / local_seconds:.2f} |")
    print(f"| Ray, {args.ray} actors (Ray and actor start included) | {ray_seconds:.1f} | {n / ray_seconds:.2f} |")
    print(f"Ray at {local_seconds / ray_seconds:.2f}x the in-process engine")


if __name__ == "__main__":
    main()
