"""Images per second of ``explain_run`` end to end, against the network alone and decoding alone, and memory.

A collection of ``--images`` real-size paintings (People-Art's JPEGs, repeated under new ids when there are
fewer) gets a run with an off-the-shelf MobileNetV2 (the shipped ImageNet weights, a new 2-class head); then,
in one process:

- (a) the network alone: one forward pass per batch of pre-decoded, pre-resized tensors, as loaded (float32,
  contiguous), prepared as ``explain_run`` runs it (batch norms folded, channels-last), in each precision;
- (b) decoding alone: ``load_image`` and the resize to 224 px of every image, in this process;
- end to end: ``explain_run`` with CAM, Grad-CAM and Grad-CAM++ (sharing one forward pass), for each
  ``--workers`` value and each of ``--precisions``, from an empty map store each time, and with ``--ray N``
  the Ray engine with N actors; each row's floor is the slower of (b) and the network alone in its own
  precision, and the last column compares it with the float32 contiguous network;
- memory: resident set size after ``--memory-images`` / 10 and after ``--memory-images`` images explained
  (the second call resumes the first), with CAM.

    .venv/bin/python bench/explain_throughput.py --images 2000 --memory-images 10000 [--reference-src DIR]

``--reference-src`` times another checkout's ``explain_run`` (``git worktree add DIR COMMIT``) on the same run,
in a process of its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from iconolens.data.dataset_json import save_dataset_json
from iconolens.data.images import load_image
from iconolens.data.records import Dataset, Sample
from iconolens.explain.collection import ExplainSettings, explain_run
from iconolens.inference import autocast_to, half_dtype, network_on
from iconolens.models.backbones import build_classifier
from iconolens.models.checkpoint import save_checkpoint
from iconolens.models.meta import ModelMeta
from iconolens.models.transforms import image_to_uint8, normalise
from iconolens.run import RunDirectory

PEOPLEART = Path(__file__).resolve().parents[2] / "shared" / "data" / "peopleart" / "JPEGImages"
METHODS = ["cam", "gradcam", "gradcampp"]


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_run(root: Path, count: int) -> RunDirectory:
    files = sorted(PEOPLEART.rglob("*.jpg"))
    if not files:
        sys.exit(f"no JPEG under {PEOPLEART}")
    samples = [Sample(id=f"i{i:05d}", path=files[i % len(files)], labels=("person",), split="test")
               for i in range(count)]
    run = RunDirectory(root)
    save_dataset_json(Dataset(samples=tuple(samples), classes=("person", "nobody")), run.dataset_json)
    model = build_classifier("mobilenet_v2", 2, pretrained=True)
    meta = ModelMeta(classes=("person", "nobody"), backbone="mobilenet_v2", input_size=224, task="multiclass",
                     mode="off-the-shelf")
    save_checkpoint(run.model_dir, model, meta)
    return run


def reference_seconds(source: str, run: RunDirectory) -> float:
    """Seconds of another checkout's ``explain_run`` (``source``/src) on the same run, timed in its own process."""
    import subprocess

    code = (
        "import time, torch; torch.set_num_threads(%d)\n"
        "from iconolens.run import RunDirectory\n"
        "from iconolens.explain.collection import ExplainSettings, explain_run\n"
        "start = time.perf_counter()\n"
        "explain_run(RunDirectory(%r), %r, settings=ExplainSettings(batch_size=8))\n"
        "print(time.perf_counter() - start)\n"
    ) % (torch.get_num_threads(), str(run.root), METHODS)
    env = {**os.environ, "PYTHONPATH": str(Path(source) / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--memory-images", type=int, default=10000)
    parser.add_argument("--workers", default="0,1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("runs/explain-throughput"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference-src", help="another checkout whose explain_run to time on the same run")
    parser.add_argument("--ray", type=int, default=0, help="also time the Ray engine with this many actors")
    parser.add_argument("--precisions", default="full,mixed", help="explain_run's precisions to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shutil.rmtree(args.work, ignore_errors=True)
    run = make_run(args.work / "run", args.images)
    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.models.checkpoint import load_checkpoint

    samples = list(load_dataset_json(run.dataset_json).samples)
    model, meta = load_checkpoint(run.model_dir)
    model.eval()

    start = time.perf_counter()
    decoded = [image_to_uint8(load_image(s.path), 224) for s in samples]
    decode_seconds = time.perf_counter() - start

    cpu = torch.device("cpu")
    precisions = args.precisions.split(",")
    laid_out = network_on(load_checkpoint(run.model_dir)[0].eval(), cpu, meta.input_size)

    def network_alone(net: torch.nn.Module, precision: str) -> float:
        with torch.inference_mode(), autocast_to(cpu, half_dtype(cpu, precision)):
            net(normalise(torch.stack(decoded[:8]), meta.mean, meta.std))  # warm-up
            start = time.perf_counter()
            for i in range(0, len(decoded), args.batch_size):
                net(normalise(torch.stack(decoded[i: i + args.batch_size]), meta.mean, meta.std))
            return time.perf_counter() - start

    def floors() -> dict[str, float]:
        return {"as loaded": network_alone(model, "full"),
                **{p: network_alone(laid_out, p) for p in precisions}}

    forward_runs = [floors()]
    rows = []
    for precision in precisions:
        for workers in (int(w) for w in args.workers.split(",")):
            shutil.rmtree(run.maps_root, ignore_errors=True)
            start = time.perf_counter()
            explain_run(run, METHODS, settings=ExplainSettings(batch_size=args.batch_size, workers=workers,
                                                               device="cpu", precision=precision))
            rows.append((f"explain_run cam+gradcam+gradcampp, {precision} precision, workers={workers}",
                         time.perf_counter() - start, precision))
    if args.ray:
        from iconolens.explain.ray_engine import explain_run_on_ray

        shutil.rmtree(run.maps_root, ignore_errors=True)
        start = time.perf_counter()
        explain_run_on_ray(run, METHODS, settings=ExplainSettings(batch_size=args.batch_size, device="cpu"),
                           workers=args.ray)
        rows.append((f"explain_run_on_ray, {args.ray} actors (Ray start included)", time.perf_counter() - start,
                     "full"))
    if args.reference_src:
        shutil.rmtree(run.maps_root, ignore_errors=True)
        rows.append((f"the same with the code in {args.reference_src}", reference_seconds(args.reference_src, run),
                     "as loaded"))
    forward_runs.append(floors())  # again after, so a slow moment does not set the floor
    del decoded
    forward = {key: min(runs[key] for runs in forward_runs) for key in forward_runs[0]}
    rows = [("(a) network alone as loaded: float32, contiguous (faster of 2)", forward["as loaded"], "as loaded"),
            *((f"(a) network alone, folded and channels-last, {p} precision (faster of 2)", forward[p], p)
              for p in precisions),
            ("(b) decoding and resizing alone", decode_seconds, "as loaded"), *rows]
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, {args.images} images")
    print("| what | seconds | images/s | x its floor | x float32 contiguous floor |\n|---|---|---|---|---|")
    old_floor = max(decode_seconds, forward["as loaded"])
    for label, seconds, floor_of in rows:
        floor = max(decode_seconds, forward[floor_of])
        print(f"| {label} | {seconds:.1f} | {args.images / seconds:.1f} | {floor / seconds:.2f} | "
              f"{old_floor / seconds:.2f} |", flush=True)

    if args.memory_images:
        memory = make_run(args.work / "memory", args.memory_images)
        first = args.memory_images // 10
        ids = load_dataset_json(memory.dataset_json)
        subset = Dataset(samples=ids.samples[:first], classes=ids.classes)
        full = memory.root / "full.json"
        shutil.copyfile(memory.dataset_json, full)
        save_dataset_json(subset, memory.dataset_json)
        settings = ExplainSettings(batch_size=args.batch_size, workers=1, device="cpu")
        explain_run(memory, ["cam"], settings=settings)
        after_first = resident_mib()
        shutil.copyfile(full, memory.dataset_json)
        explain_run(memory, ["cam"], settings=settings)
        after_all = resident_mib()
        print(f"\nresident memory: {after_first:.0f} MiB after {first} images, {after_all:.0f} MiB after "
              f"{args.memory_images} ({100 * (after_all / after_first - 1):+.1f}%)")


if __name__ == "__main__":
    main()
