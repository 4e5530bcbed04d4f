"""Listing People-Art: header-only reading (the default) against decoding every image (the reference).

    .venv/bin/python bench/bench_data_loading.py [--root ../shared/data/peopleart] [--repeats 3]

Both paths go through ``load_collection`` on the same collection in the same run; the decode path is
what a reader that opens every image with ``load_image`` would pay just to learn the sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from iconolens.data.collections import load_collection

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peopleart"


def _timed(root: Path, repeats: int, decode: bool) -> tuple[float, int, int]:
    """Median wall time of ``load_collection`` and what it loaded (images, boxes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dataset = load_collection(root, decode=decode)
        times.append(time.perf_counter() - start)
    boxes = sum(len(s.boxes) for s in dataset.samples)
    return statistics.median(times), len(dataset), boxes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header_time, images, boxes = _timed(args.root, args.repeats, decode=False)
    decode_time, images_d, boxes_d = _timed(args.root, args.repeats, decode=True)
    assert (images, boxes) == (images_d, boxes_d)
    print(f"images {images}, boxes {boxes}")
    print(f"headers only : {header_time:.2f} s (median of {args.repeats})")
    print(f"decode all   : {decode_time:.2f} s (median of {args.repeats})")
    print(f"speed-up     : {decode_time / header_time:.1f}x")
