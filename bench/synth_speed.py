"""How long the synthetic iconography collection takes to write (the embedded default of `make demo`).

There is no outside generator to compare with, so the run reports its own parts instead: planning and
painting the scenes, encoding the PNGs, and the whole call (which adds atomic file writes and the
annotations). Wall-clock and CPU time are both shown, since the machine may be shared.

    .venv/bin/python bench/synth_speed.py --images 300 --seed 0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from iconolens.data.synth import encode_png, paint_scene, plan_scene, write_synthetic_collection


def _timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    pixels, paint_wall, paint_cpu = _timed(
        lambda: [paint_scene(plan_scene(args.seed, i, args.size)).pixels for i in range(args.images)]
    )
    _, png_wall, png_cpu = _timed(lambda: [encode_png(p) for p in pixels])
    with tempfile.TemporaryDirectory() as tmp:
        path, total_wall, total_cpu = _timed(
            lambda: write_synthetic_collection(Path(tmp) / "synth", args.images, args.seed, args.size)
        )
        size = sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())

    n = args.images
    print(f"{n} images of {args.size} px, seed {args.seed}")
    for name, wall, cpu in (
        ("plan + paint", paint_wall, paint_cpu),
        ("PNG encoding", png_wall, png_cpu),
        ("whole call", total_wall, total_cpu),
    ):
        print(f"  {name:12s}: {wall:6.2f} s wall, {cpu:6.2f} s CPU ({1000 * cpu / n:.1f} ms CPU/image)")
    print(f"  {size / 2**20:.1f} MiB written")


if __name__ == "__main__":
    main()
