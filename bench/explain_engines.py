"""``explain`` on the Ray engine against the in-process engine, timed in turns on the same run.

This machine's speed drifts by a third between minutes, so one run of each engine measured minutes apart says
little of their ratio. Here each repeat times the in-process engine (two torch threads, one decoding worker)
and then the Ray engine (``--actors`` actors of one thread each, a local Ray started and shut down inside the
timing) for each ``--rows-per-actor`` value (how many rows of batches Ray Data gets per actor; 125 or more
gives one row per batch of eight at 2,000 images); the ratio is taken per repeat, then its median.

    .venv/bin/python bench/explain_engines.py --images 2000 --repeat 3 --rows-per-actor 8,125
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch
from explain_throughput import METHODS, make_run

from iconolens import ray_pool
from iconolens.explain.collection import ExplainSettings, explain_run
from iconolens.explain.ray_engine import explain_run_on_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--rows-per-actor", default=str(ray_pool.ROWS_PER_ACTOR))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the in-process engine")
    parser.add_argument("--work", type=Path, default=Path("runs/explain-engines"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.work, ignore_errors=True)
    run = make_run(args.work / "run", args.images)
    rows_options = [int(r) for r in args.rows_per_actor.split(",")]

    def timed(explain) -> float:
        shutil.rmtree(run.maps_root, ignore_errors=True)
        start = time.perf_counter()
        explain()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"in process": [], **{f"ray, {r} rows per actor": [] for r in rows_options}}
    for repeat in range(args.repeat):
        times["in process"].append(timed(lambda: explain_run(
            run, METHODS, settings=ExplainSettings(batch_size=args.batch_size, workers=1, device="cpu"))))
        for rows in rows_options:
            ray_pool.ROWS_PER_ACTOR = rows
            times[f"ray, {rows} rows per actor"].append(timed(lambda: explain_run_on_ray(
                run, METHODS, settings=ExplainSettings(batch_size=args.batch_size, device="cpu"),
                workers=args.actors)))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)

    print(f"\ntorch {torch.__version__}, {args.images} images, batches of {args.batch_size}, CAM + Grad-CAM + "
          f"Grad-CAM++, {args.actors} Ray actors")
    print("| engine | seconds, each repeat | median seconds | images/s | x in process (median of the ratios) |")
    print("|---|---|---|---|---|")
    base = times["in process"]
    for name, seconds in times.items():
        ratio = statistics.median(b / s for b, s in zip(base, seconds))
        median = statistics.median(seconds)
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in seconds)} | {median:.1f} | {args.images / median:.1f} | "
              f"{ratio:.2f} |")


if __name__ == "__main__":
    main()
