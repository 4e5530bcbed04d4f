"""``explain_maps``: one entry point for every saliency method, all classes (or a chosen few) at once.

How each method is computed, fastest first:
- ``cam``: one forward pass in inference mode; needs a global-average-pooling + linear head.
- ``gradcam``, ``gradcampp``, ``xgradcam``, ``hirescam``, ``layercam``: one forward pass. With a GAP + linear
  head (recognised from the values it computed, see ``iconolens.explain.head``) the gradient is known in
  closed form and no backward pass runs; with any other head, one batched backward pass from the logits to
  the feature maps gives every class.
- ``ablationcam``: one forward pass with a GAP + linear head (a channel's score drop is known in closed
  form); otherwise the layers after the target run again on ``K`` ablated copies per image, shared by all
  classes (``iconolens.explain.ablation``).
- ``eigencam``: one forward pass in inference mode; the same map for every class.
- ``layercam_fused``: LayerCAM of three stages (strides 8, 16, 32) fused at the finest one; one forward pass
  and one batched backward pass per stage (``iconolens.explain.layercam``).
- ``smoothgradcampp``: the clean image and ``n`` noisy copies go through the network in large batches,
  each copy handled as ``gradcampp``.
- ``vbp``: one forward pass in inference mode; the same map for every class.
- ``scorecam``: one forward pass, then ``K`` masked copies of each image in batches, shared by all classes.
- ``rise``: ``n_masks`` masked copies in batches, in inference mode.

The score explained by the gradient and ablation methods is the class logit; Score-CAM and RISE explain
the class probability, as their papers do. The model is put in eval mode for the computation and every
submodule gets its own mode back afterwards; parameters' ``.grad`` are not touched.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from iconolens.errors import BadInputError
from iconolens.explain import cam as cam_formulas
from iconolens.explain.ablation import ablation_drops
from iconolens.explain.gradients import formulas_from_gradients
from iconolens.explain.head import linear_gap_weight
from iconolens.explain.layercam import default_fusion_stages, fused_layercam
from iconolens.explain.layers import TargetLayer, block_names, named_target_layer, resolve_target_layer
from iconolens.explain.recording import evaluation_mode, record_forward
from iconolens.explain.rise import plan_masks, rise_saliency
from iconolens.explain.scorecam import masked_scores, scorecam_from_scores
from iconolens.explain.tokens import check_input_size
from iconolens.explain.vbp import visual_backprop
from iconolens.inference import autocast_to, half_dtype

METHODS: tuple[str, ...] = (
    "cam", "gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "hirescam", "layercam", "ablationcam",
    "eigencam", "layercam_fused", "scorecam", "vbp", "rise",
)
#: Methods whose map is the same for every class.
CLASS_AGNOSTIC: tuple[str, ...] = ("eigencam", "vbp")
Activation = Literal["softmax", "sigmoid"]
#: ``batch_size`` counts images of this many pixels (224 x 224).
REFERENCE_PIXELS = 224 * 224

_FROM_WEIGHT = {
    "gradcam": cam_formulas.gradcam_from_weight,
    "gradcampp": cam_formulas.gradcampp_from_weight,
    "xgradcam": cam_formulas.xgradcam_from_weight,
    "hirescam": cam_formulas.hirescam_from_weight,
    "layercam": cam_formulas.layercam_from_weight,
}
_FROM_GRADIENTS = {
    "gradcam": cam_formulas.gradcam_from_gradients,
    "gradcampp": cam_formulas.gradcampp_from_gradients,
    "xgradcam": cam_formulas.xgradcam_from_gradients,
    "hirescam": cam_formulas.hirescam_from_gradients,
    "layercam": cam_formulas.layercam_from_gradients,
}
#: Methods computed from one recorded forward pass (plus gradients or ablations where no closed form holds).
ONE_PASS_METHODS: tuple[str, ...] = ("cam", *_FROM_GRADIENTS, "ablationcam", "eigencam")


@dataclass(frozen=True)
class SaliencyResult:
    """Raw maps ``(N, C, h, w)`` at the method's own resolution and class probabilities ``(N, C)``.

    ``class_indices`` are the model's output indices the ``C`` maps belong to; ``closed_form`` says
    whether a GAP + linear head let the gradients be computed without a backward pass.
    """

    raw: Tensor
    scores: Tensor
    class_indices: tuple[int, ...]
    target_layer: str
    closed_form: bool = False


def probabilities(logits: Tensor, activation: Activation) -> Tensor:
    """Class probabilities: softmax for single-label models, sigmoid for multi-label ones."""
    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)


def resolve_classes(
    classes: Sequence[int | str] | None, num_classes: int, class_names: Sequence[str] | None = None
) -> Tensor:
    """Output indices for ``classes`` (indices, or names when ``class_names`` is given); None means all."""
    if classes is None:
        return torch.arange(num_classes)
    if class_names is not None and len(class_names) != num_classes:
        raise BadInputError(f"{len(class_names)} class names were given for a model with {num_classes} outputs")
    indices = []
    for cls in classes:
        if isinstance(cls, str):
            if class_names is None or cls not in class_names:
                known = ", ".join(class_names) if class_names else f"indices 0 to {num_classes - 1}"
                raise BadInputError(f"there is no class {cls!r}; the model's classes are {known}")
            indices.append(list(class_names).index(cls))
        elif isinstance(cls, numbers.Integral) and not isinstance(cls, bool) and 0 <= int(cls) < num_classes:
            indices.append(int(cls))
        else:
            raise BadInputError(f"there is no class {cls!r}; the model's classes are indices 0 to {num_classes - 1}")
    if not indices:
        raise BadInputError("the list of classes to explain is empty")
    return torch.tensor(indices, dtype=torch.long)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise BadInputError(f"images must be a batch of 3-channel images shaped (N, 3, H, W); got {shape}")
    if images.shape[0] == 0:
        raise BadInputError("the batch of images to explain is empty")


def check_parameters(method: str, n: int, sigma: float, n_masks: int, grid: int, p: float, activation: str) -> None:
    if method not in METHODS:
        raise BadInputError(f"unknown saliency method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BadInputError(f"the number of noisy copies n must be a whole number of at least 1; got {n!r}")
    if not sigma >= 0:
        raise BadInputError(f"the noise level sigma must be 0 or more; got {sigma!r}")
    if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 1:
        raise BadInputError(f"the number of RISE masks must be at least 1; got {n_masks!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise BadInputError(f"the RISE grid size must be at least 1; got {grid!r}")
    if not 0 < p <= 1:
        raise BadInputError(f"the RISE mask probability p must be in (0, 1]; got {p!r}")
    if activation not in ("softmax", "sigmoid"):
        raise BadInputError(f"activation must be 'softmax' or 'sigmoid'; got {activation!r}")


def _images_per_pass(images: Tensor, batch_size: int) -> int:
    """Images per forward pass: ``batch_size`` at 224x224 pixels, proportionally fewer for larger images.

    Large batches of large images leave the CPU's caches and get slower per image; a pixel budget keeps
    the throughput of the best batch size at any resolution. Never fewer than the caller's own batch.
    """
    pixels = images.shape[-2] * images.shape[-1]
    return max(images.shape[0], 1, (batch_size * REFERENCE_PIXELS) // max(pixels, 1))


ClassChoice = Sequence[int | str] | None


def _one_pass(
    model: nn.Module,
    images: Tensor,
    methods: Sequence[str],
    target: TargetLayer,
    classes: ClassChoice,
    class_names: Sequence[str] | None,
    half: torch.dtype | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor, bool]:
    """Maps of several one-pass methods (``ONE_PASS_METHODS``) from one recorded forward pass, and where no
    closed form holds one backward pass shared by all gradient methods -> (maps by method, logits, class
    indices, closed form)."""
    record = record_forward(model, images, target, gradients=any(m in _FROM_GRADIENTS for m in methods), half=half)
    indices = resolve_classes(classes, record.logits.shape[1], class_names)
    weight = linear_gap_weight(record)
    chosen = None if weight is None else weight[indices.to(weight.device)]
    logits = record.logits.detach()
    maps: dict[str, Tensor] = {}
    with torch.no_grad():
        features = record.activation.detach()
        for method in methods:
            if method == "cam":
                if chosen is None:
                    raise BadInputError(
                        "CAM needs a head of global average pooling followed by one linear layer, and this "
                        "model has another head; use gradcam or gradcampp"
                    )
                maps[method] = cam_formulas.cam_from_weight(features, chosen)
            elif method == "eigencam":
                maps[method] = cam_formulas.eigencam(features).expand(-1, len(indices), -1, -1).clone()
            elif method == "ablationcam":
                on_device = indices.to(logits.device)
                if chosen is not None:
                    drops = cam_formulas.ablation_drops_from_weight(features, chosen)
                else:
                    drops = ablation_drops(model, images, target, features, logits, on_device)
                maps[method] = cam_formulas.ablationcam_from_drops(features, logits[:, on_device], drops)
            elif chosen is not None:
                maps[method] = _FROM_WEIGHT[method](features, chosen)
    by_gradients = {m: _FROM_GRADIENTS[m] for m in methods if m in _FROM_GRADIENTS and chosen is None}
    if by_gradients:
        maps.update(
            formulas_from_gradients(record.logits, record.activation, indices.to(record.logits.device), by_gradients)
        )
    return maps, logits, indices, weight is not None


def _scorecam(
    model: nn.Module,
    images: Tensor,
    target: TargetLayer,
    classes: ClassChoice,
    class_names: Sequence[str] | None,
    activation: Activation,
    batch_size: int,
    half: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Score-CAM maps for one batch -> (maps, logits, class indices); see ``iconolens.explain.scorecam``."""
    record = record_forward(model, images, target, gradients=False, half=half)
    indices = resolve_classes(classes, record.logits.shape[1], class_names)
    with torch.inference_mode():
        predict = lambda batch: probabilities(_logits(model, batch, half), activation)  # noqa: E731
        on_device = indices.to(record.logits.device)
        baseline = predict(torch.zeros_like(images[:1]))
        per_pass = _images_per_pass(images[:1], batch_size)
        scores = masked_scores(predict, images, record.activation, per_pass, baseline)
        chosen_baseline = baseline[:, on_device].expand(images.shape[0], -1)
        maps = scorecam_from_scores(record.activation, scores[:, :, on_device], chosen_baseline)
    return maps, record.logits, indices


def _smooth_gradcampp(
    model: nn.Module,
    images: Tensor,
    target: TargetLayer,
    classes: ClassChoice,
    class_names: Sequence[str] | None,
    n: int,
    sigma: float,
    seed: int,
    batch_size: int,
    clean_pass: bool = True,
    half: torch.dtype | None = None,
) -> tuple[Tensor, Tensor | None, Tensor, bool]:
    """Smooth Grad-CAM++ (Omeiza et al. 2019) as the mean of exact Grad-CAM++ maps over noisy copies:

        M_c(x) = 1/n sum_i GradCAM++_c(x + e_i),   e_i ~ N(0, (sigma * (max x - min x))^2) per pixel

    With ``clean_pass`` the clean images ride in the first batch, for the returned class probabilities;
    without it no logits are returned.
    """
    count = images.shape[0]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, 1, *images.shape[1:]), generator=generator, dtype=torch.float32)
    spread = images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))
    copies = images[None] + noise.to(images) * (sigma * spread).view(1, count, 1, 1, 1)
    clean = count if clean_pass else 0
    everything = torch.cat([images[:clean], copies.reshape(-1, *images.shape[1:])])
    chunk = _images_per_pass(images, batch_size)
    maps, logits, indices, closed = [], [], None, True
    for start in range(0, everything.shape[0], chunk):
        part_maps, part_logits, indices, part_closed = _one_pass(
            model, everything[start : start + chunk], ["gradcampp"], target, classes, class_names, half
        )
        maps.append(part_maps["gradcampp"])
        logits.append(part_logits[: max(0, clean - start)])
        closed = closed and part_closed
    all_maps = torch.cat(maps)
    smooth = all_maps[clean:].reshape(n, count, *all_maps.shape[1:]).mean(dim=0)
    return smooth, torch.cat(logits) if clean_pass else None, indices, closed


def explain_maps(
    model: nn.Module,
    images: Tensor,
    method: str,
    classes: Sequence[int | str] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    target_layer: str | TargetLayer | None = None,
    activation: Activation = "softmax",
    n: int = 5,
    sigma: float = 0.15,
    seed: int = 0,
    n_masks: int = 1000,
    grid: int = 7,
    p: float = 0.5,
    batch_size: int = 32,
    map_stride: int = 4,
    known_scores: Tensor | None = None,
    fuse_layers: Sequence[str] | None = None,
    precision: str = "full",
) -> SaliencyResult:
    """Saliency maps of ``method`` for ``images`` ``(N, 3, H, W)`` (already normalised for the model).

    ``classes``: output indices (or names, with ``class_names``) to explain; None means every class.
    ``target_layer``: a module name (``"layer4"``, ``"features.29"``, ``"_avg_pooling:input"``); found
    automatically when None. ``activation`` turns logits into the returned probabilities and RISE's scores.
    Smooth Grad-CAM++: ``n`` noisy copies; noise standard deviation ``sigma * (max(x) - min(x))`` of each
    image (so ``sigma`` is relative to the input's value range), drawn as standard normal float32 of shape
    ``(n, 1, 3, H, W)`` from ``torch.Generator().manual_seed(seed)`` and shared by the images of a call.
    RISE: ``n_masks`` masks on a ``grid x grid`` grid with keep probability ``p``, seeded by ``seed``;
    maps come at ``1/map_stride`` of the input size. ``batch_size``: images of 224x224 pixels per forward
    pass for noisy copies and masked images (Smooth Grad-CAM++, RISE, Score-CAM; proportionally fewer for
    larger images).
    ``fuse_layers``: the stages ``layercam_fused`` fuses, shallow to deep (default: the last module at each of
    the three deepest resolutions).
    ``known_scores``: the ``(N, C)`` probabilities of the chosen classes when the caller already has them
    (from another method on the same batch); they are returned as given, and Smooth Grad-CAM++ then skips
    the forward pass of the clean images, one sixth of its cost at ``n=5``.
    ``precision``: ``"full"`` or ``"mixed"`` (see ``iconolens.inference``; LayerCAM fused and Ablation-CAM
    without a closed form always run in full precision).
    """
    return explain_many(
        model, images, [method], classes, class_names=class_names, target_layer=target_layer,
        activation=activation, n=n, sigma=sigma, seed=seed, n_masks=n_masks, grid=grid, p=p,
        batch_size=batch_size, map_stride=map_stride, known_scores=known_scores, fuse_layers=fuse_layers,
        precision=precision,
    )[method]


def explain_many(
    model: nn.Module,
    images: Tensor,
    methods: Sequence[str],
    classes: Sequence[int | str] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    target_layer: str | TargetLayer | None = None,
    activation: Activation = "softmax",
    n: int = 5,
    sigma: float = 0.15,
    seed: int = 0,
    n_masks: int = 1000,
    grid: int = 7,
    p: float = 0.5,
    batch_size: int = 32,
    map_stride: int = 4,
    known_scores: Tensor | None = None,
    fuse_layers: Sequence[str] | None = None,
    precision: str = "full",
) -> dict[str, SaliencyResult]:
    """Maps of several methods for the same images, sharing what they can -> ``{method: SaliencyResult}``.

    The one-pass methods (CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Ablation-CAM, Eigen-CAM)
    share one forward pass, and where no closed form holds one backward pass; the others reuse its class
    probabilities (Smooth Grad-CAM++ then skips its clean pass). Options as for ``explain_maps``.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise BadInputError("the list of saliency methods is empty; choose from " + ", ".join(METHODS))
    for method in methods:
        check_parameters(method, n, sigma, n_masks, grid, p, activation)
    _check_images(images)
    check_input_size(model, images)
    if isinstance(map_stride, bool) or not isinstance(map_stride, int) or map_stride < 1:
        raise BadInputError(f"map_stride must be a whole number of at least 1; got {map_stride!r}")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        images = images.to(device=parameter.device, dtype=parameter.dtype)
    half = half_dtype(images.device, precision)
    layer = resolve_target_layer(model, target_layer)
    results: dict[str, SaliencyResult] = {}
    with evaluation_mode(model):
        one_pass = [m for m in methods if m in ONE_PASS_METHODS]
        if one_pass:
            by_method, logits, indices, closed = _one_pass(model, images, one_pass, layer, classes, class_names, half)
            for method in one_pass:
                results[method] = _result(by_method[method], logits, indices, layer, closed, known_scores, activation)
            known_scores = results[one_pass[0]].scores
        for method in (m for m in methods if m not in ONE_PASS_METHODS):
            maps, logits, indices, target, closed = _other_method(
                model, images, method, layer, classes, class_names, activation, n, sigma, seed, n_masks, grid, p,
                batch_size, map_stride, known_scores, fuse_layers, half,
            )
            results[method] = _result(maps, logits, indices, target, closed, known_scores, activation)
            known_scores = results[method].scores
    return {m: results[m] for m in methods}


def _other_method(
    model: nn.Module,
    images: Tensor,
    method: str,
    target: TargetLayer,
    classes: ClassChoice,
    class_names: Sequence[str] | None,
    activation: Activation,
    n: int,
    sigma: float,
    seed: int,
    n_masks: int,
    grid: int,
    p: float,
    batch_size: int,
    map_stride: int,
    known_scores: Tensor | None,
    fuse_layers: Sequence[str] | None,
    half: torch.dtype | None = None,
) -> tuple[Tensor, Tensor | None, Tensor, TargetLayer, bool]:
    """One method outside the one-pass family -> (maps, logits or None, class indices, target, closed form)."""
    closed = False
    if method == "layercam_fused":
        stages = list(fuse_layers) if fuse_layers else default_fusion_stages(model, images[:1])
        for name in stages:
            named_target_layer(model, name)
        maps, logits, indices = fused_layercam(
            model, images, stages, lambda count: resolve_classes(classes, count, class_names)
        )
        target = TargetLayer(",".join(stages))
    elif method == "scorecam":
        maps, logits, indices = _scorecam(model, images, target, classes, class_names, activation, batch_size, half)
    elif method == "smoothgradcampp":
        maps, logits, indices, closed = _smooth_gradcampp(
            model, images, target, classes, class_names, n, sigma, seed, batch_size, clean_pass=known_scores is None,
            half=half,
        )
    elif method == "vbp":
        record = record_forward(model, images, target, gradients=False, block_modules=block_names(model), half=half)
        logits = record.logits
        indices = resolve_classes(classes, logits.shape[1], class_names)
        with torch.inference_mode():
            single = visual_backprop([*record.blocks, record.activation])
            maps = single.expand(-1, len(indices), -1, -1).clone()
    else:
        with torch.inference_mode():
            logits = _logits(model, images, half)
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                raise BadInputError("the model must return class logits shaped (N, C)")
            indices = resolve_classes(classes, logits.shape[1], class_names)
            height, width = images.shape[-2:]
            plan = plan_masks(n_masks, grid, p, (height, width), seed)
            size = (-(-height // map_stride), -(-width // map_stride))
            maps = rise_saliency(
                lambda batch: probabilities(_logits(model, batch, half), activation),
                images,
                plan,
                indices.to(images.device),
                batch_size=_images_per_pass(images, batch_size),
                map_size=size,
            )
    return maps, logits, indices, target, closed


def _logits(model: nn.Module, images: Tensor, half: torch.dtype | None) -> Tensor:
    """``model(images)``, its layers in ``half`` when given, the logits in float32."""
    if half is None:
        return model(images)
    with autocast_to(images.device, half):
        logits = model(images)
    return logits.float() if isinstance(logits, Tensor) else logits


def _result(
    maps: Tensor,
    logits: Tensor | None,
    indices: Tensor,
    target: TargetLayer,
    closed: bool,
    known_scores: Tensor | None,
    activation: Activation,
) -> SaliencyResult:
    """Package a method's maps with the class probabilities (the caller's, when it already had them)."""
    if known_scores is not None:
        if tuple(known_scores.shape) != (maps.shape[0], len(indices)):
            raise BadInputError(
                f"known_scores must be shaped (N, C) = ({maps.shape[0]}, {len(indices)}); "
                f"got {tuple(known_scores.shape)}"
            )
        scores = known_scores.detach().float()
    else:
        with torch.no_grad():
            scores = probabilities(logits.detach().float(), activation)[:, indices.to(logits.device)]
    return SaliencyResult(
        raw=maps.detach().clone() if maps.is_inference() else maps.detach(),
        scores=scores.clone(),
        class_indices=tuple(int(i) for i in indices),
        target_layer=target.describe(),
        closed_form=closed,
    )
