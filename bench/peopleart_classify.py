"""People-Art classification benchmark: off-the-shelf vs fine-tuning vs a SIFT bag-of-words SVM.

Two tasks on the People-Art paintings (18 styles painted before c. 1910):
- person presence: binary, "person" vs "no person" (softmax over two classes);
- style: 18 classes (the image's folder).

People-Art's own train split is used for training, with a seeded 15% of it held out for early stopping;
its val split is only scored (it is the "test" split of the runs below), so the reported numbers are not
tuned on. Methods: EfficientNet-Lite0 and MobileNetV2 with ImageNet weights, off-the-shelf (frozen,
cached pooled features + softmax head by RMSprop) and fine-tuned (SGD Nesterov, early stages frozen,
batch-norm statistics kept), plus BoW (SIFT, k-means vocabulary, RBF SVM grid search). For every run:
accuracy, macro ROC-AUC (one class against the rest) and wall time.

    .venv/bin/python bench/peopleart_classify.py [--data ../shared/data/peopleart] [--work DIR]

Every image is decoded once and stored resized (square for the networks, aspect kept for SIFT) in the
work folder, so the runs below read small PNGs. Prints a Markdown table and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from iconolens.data.collections import load_collection
from iconolens.data.images import load_image
from iconolens.data.records import Dataset
from iconolens.models.bow import fit_vocabulary, fit_word_svm, sift_descriptors, svm_scores, word_histograms
from iconolens.models.metrics import classification_metrics
from iconolens.models.training import TrainingConfig, evaluate_classifier, train_classifier

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peopleart"


def resized_copies(dataset: Dataset, work: Path, net_size: int, sift_side: int) -> tuple[dict[str, Path], dict[str, Path]]:
    """Decode every image once; write a square ``net_size`` PNG and a ``sift_side``-bounded PNG."""
    net_paths, sift_paths = {}, {}
    for sample in dataset.samples:
        stem = sample.id.replace("/", "__").rsplit(".", 1)[0]
        net = work / f"net{net_size}" / f"{stem}.png"
        sift = work / f"sift{sift_side}" / f"{stem}.png"
        if not (net.is_file() and sift.is_file()):
            image = load_image(sample.path)
            net.parent.mkdir(parents=True, exist_ok=True)
            sift.parent.mkdir(parents=True, exist_ok=True)
            image.resize((net_size, net_size), Image.BILINEAR).save(net)
            copy = image.copy()
            copy.thumbnail((sift_side, sift_side), Image.BILINEAR)
            copy.save(sift)
        net_paths[sample.id], sift_paths[sample.id] = net, sift
    return net_paths, sift_paths


def task_dataset(style: Dataset, presence: Dataset, task: str, net_paths: dict[str, Path], seed: int) -> Dataset:
    """The task's labels on the resized images; train -> train/val (85/15, seeded), val -> test."""
    rng = np.random.default_rng(seed)
    persons = {s.id: bool(s.labels) for s in presence.samples}
    samples = []
    for sample in style.samples:
        if task == "presence":
            labels = ("person",) if persons[sample.id] else ("no person",)
        else:
            labels = sample.labels
        split = "test" if sample.split == "val" else ("val" if rng.random() < 0.15 else "train")
        samples.append(replace(sample, path=net_paths[sample.id], labels=labels, split=split))
    classes = ("no person", "person") if task == "presence" else style.classes
    return Dataset(tuple(samples), classes, multi_label=False, root=style.root)


def run_network(dataset: Dataset, config: TrainingConfig, run: Path) -> dict:
    start = time.perf_counter()
    outcome = train_classifier(dataset, config, run)
    metrics = evaluate_classifier(dataset, run, "test")
    return {
        "accuracy": metrics["accuracy"],
        "roc_auc": metrics["roc_auc"],
        "macro_f1": metrics["macro_f1"],
        "epochs_run": len(outcome.history),
        "best_epoch": outcome.best_epoch,
        "seconds": time.perf_counter() - start,
    }


def bow_histograms(style: Dataset, sift_paths: dict[str, Path], vocabularies: list[int], seed: int) -> dict:
    """SIFT once per image, then per vocabulary size: k-means on People-Art train images, histograms of all.

    Returns {size: (histograms by sample id, seconds)} where seconds counts the SIFT pass over all images
    plus that vocabulary's k-means and histograms (the cost one BoW model would have on its own).
    """
    start = time.perf_counter()
    descriptors = {
        s.id: sift_descriptors(np.asarray(Image.open(sift_paths[s.id]).convert("RGB"))) for s in style.samples
    }
    sift_seconds = time.perf_counter() - start
    print(f"SIFT on {len(descriptors)} images in {sift_seconds:.0f} s", flush=True)
    out = {}
    for size in vocabularies:
        start = time.perf_counter()
        vocabulary = fit_vocabulary([descriptors[s.id] for s in style.samples if s.split == "train"], size, seed)
        ids = [s.id for s in style.samples]
        hist = word_histograms([descriptors[i] for i in ids], vocabulary)
        out[size] = (dict(zip(ids, hist)), sift_seconds + time.perf_counter() - start)
    return out


def run_bow(dataset: Dataset, histograms: dict[str, np.ndarray], shared_seconds: float, seed: int) -> dict:
    start = time.perf_counter()
    index = dataset.class_index()
    fit = [s for s in dataset.samples if s.split in ("train", "val")]  # the SVM's own CV replaces early stopping
    test = [s for s in dataset.samples if s.split == "test"]
    svm = fit_word_svm(np.stack([histograms[s.id] for s in fit]), np.array([index[s.labels[0]] for s in fit]), seed)
    scores = svm_scores(svm, np.stack([histograms[s.id] for s in test]))
    y = np.array([index[s.labels[0]] for s in test])
    metrics = classification_metrics(y, scores, dataset.classes)
    return {
        "accuracy": metrics["accuracy"],
        "roc_auc": metrics["roc_auc"],
        "macro_f1": metrics["macro_f1"],
        "svm": {k.replace("estimator__", ""): v for k, v in svm.best_params_.items()},
        "seconds": shared_seconds + time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="People-Art root folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/iconolens-bench-peopleart"), help="scratch folder")
    parser.add_argument("--image-size", type=int, default=128, help="network input size (square)")
    parser.add_argument("--sift-side", type=int, default=320, help="longest side of images given to SIFT")
    parser.add_argument("--ots-epochs", type=int, default=30, help="most epochs of the off-the-shelf head")
    parser.add_argument("--ft-epochs", type=int, default=8, help="most epochs of fine-tuning")
    parser.add_argument("--frozen-fraction", type=float, default=0.6, help="early feature stages frozen when fine-tuning")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocabularies", default="500,1000,2500", help="BoW vocabulary sizes")
    parser.add_argument("--backbones", default="efficientnet_lite0,mobilenet_v2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    style = load_collection(args.data, task="style")
    presence = load_collection(args.data, task="presence")
    net_paths, sift_paths = resized_copies(style, work / "images", args.image_size, args.sift_side)
    prep_seconds = time.perf_counter() - started
    print(f"decoded and resized {len(style)} images in {prep_seconds:.0f} s", flush=True)

    vocabularies = [int(v) for v in args.vocabularies.split(",") if v]
    bow = bow_histograms(style, sift_paths, vocabularies, args.seed) if vocabularies else {}
    results: list[dict] = []
    for task in ("presence", "style"):
        dataset = task_dataset(style, presence, task, net_paths, args.seed)
        for backbone in args.backbones.split(","):
            ots = TrainingConfig(backbone=backbone, mode="off-the-shelf", image_size=args.image_size,
                                 epochs=args.ots_epochs, batch_size=args.batch_size, seed=args.seed)
            # one run folder per backbone: the second task reuses the cached features of the first
            row = run_network(dataset, ots, work / f"ots-{backbone}")
            results.append({"task": task, "method": f"{backbone} off-the-shelf", **row})
            print(json.dumps(results[-1]), flush=True)
            ft = TrainingConfig(backbone=backbone, mode="fine-tune", image_size=args.image_size,
                                epochs=args.ft_epochs, batch_size=args.batch_size,
                                frozen_fraction=args.frozen_fraction, seed=args.seed)
            row = run_network(dataset, ft, work / f"ft-{task}-{backbone}")
            results.append({"task": task, "method": f"{backbone} fine-tune", **row})
            print(json.dumps(results[-1]), flush=True)
        for vocabulary in vocabularies:
            row = run_bow(dataset, bow[vocabulary][0], bow[vocabulary][1], args.seed)
            results.append({"task": task, "method": f"BoW SIFT k={vocabulary} + RBF SVM", **row})
            print(json.dumps(results[-1]), flush=True)

    total = time.perf_counter() - started
    document = {
        "command": " ".join(sys.argv),
        "settings": vars(args) | {"data": str(args.data), "work": str(args.work)},
        "torch": torch.__version__,
        "python": platform.python_version(),
        "prep_seconds": prep_seconds,
        "total_seconds": total,
        "results": results,
    }
    (work / "results.json").write_text(json.dumps(document, indent=2, default=str))
    print()
    print("| task | method | accuracy | ROC-AUC | macro F1 | wall time (s) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['task']} | {r['method']} | {r['accuracy']:.3f} | {r['roc_auc']:.3f} | {r['macro_f1']:.3f} | {r['seconds']:.0f} |")
    print(f"\ntotal {total / 60:.1f} min (image preparation {prep_seconds:.0f} s)")


if __name__ == "__main__":
    main()
