"""How a network runs once trained: batch norms folded away, its memory layout, and its arithmetic's precision.

In evaluation a batch norm is a fixed per-channel affine map; where it takes a convolution's output and nothing
else, it folds into that convolution's weights and bias, saving a pass over every feature map. Convolutions on
CPUs (oneDNN) and on CUDA also run faster on channels-last tensors. Every network that explains is prepared both
ways (``network_on``); its results change only by float32 rounding (about 1e-7 of their scale), and a folding
that would change them more (a convolution's output also used elsewhere) is checked for and not made.

``precision="mixed"`` runs the convolution trunk in 16-bit floats: bfloat16 on a CPU (fast where it has bfloat16
or AMX instructions, slower where it has none), float16 on CUDA and Apple GPUs. Saliency maps are then computed
in float32 from the trunk's features, so only the trunk's rounding reaches them; how far mixed-precision maps
and scores stray from full-precision ones is measured in ``docs/benchmarks.md``. ``"full"`` is the default.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from iconolens.errors import BadInputError

if TYPE_CHECKING:
    import torch
    from torch import nn

PRECISIONS = ("full", "mixed")
PRECISION_HELP = ("full (default): float32 throughout; mixed: the network's trunk in 16-bit floats (bfloat16 on "
                  "CPUs, float16 on GPUs), maps computed in float32; faster, within the tolerance in the docs.")


def check_precision(precision: str) -> str:
    """``precision`` if it is one iconolens knows, else one sentence."""
    if precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}; choose {' or '.join(PRECISIONS)}")
    return precision


def half_dtype(device: "torch.device", precision: str) -> "torch.dtype | None":
    """The 16-bit type a ``precision`` runs the trunk in on ``device``, or None for float32."""
    import torch

    if check_precision(precision) == "full":
        return None
    return torch.bfloat16 if device.type == "cpu" else torch.float16


def autocast_to(device: "torch.device", dtype: "torch.dtype | None") -> Any:
    """A context running eligible operations in ``dtype`` on ``device`` (nothing when ``dtype`` is None)."""
    import torch

    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def network_on(
    model: "nn.Module", device: "torch.device", input_size: int | None = None, keep: Sequence[str] = ()
) -> "nn.Module":
    """``model`` for inference on ``device``: with an ``input_size`` its batch norms folded into the convolutions
    before them (except where a layer named in ``keep`` is involved), laid out channels-last (CPU and CUDA).

    Folded batch norms are folded in a copy, but ``model`` may be moved and laid out in place: use the result.
    """
    import torch

    if input_size is not None:
        example = torch.randn((1, 3, input_size, input_size), generator=torch.Generator().manual_seed(0))
        model = fold_batch_norms(model, example, keep)
    model = model.to(device)
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    return model


def _conv_batch_norm_pairs(model: "nn.Module", example: "torch.Tensor") -> list[tuple[str, str]]:
    """(convolution, batch norm) names where the batch norm's input, in one pass over ``example``, is the very
    tensor the convolution returned, each of them called once."""
    import torch
    from torch import nn

    outputs: dict[int, str] = {}
    inputs: dict[str, int] = {}
    calls: dict[str, int] = {}
    alive: list[Any] = []  # the tensors stay alive during the pass, so their ids stay unique
    handles = []

    def after_conv(name: str) -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            outputs[id(out)] = name
            alive.append(out)
        return hook

    def before_norm(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if args:
                inputs[name] = id(args[0])
                alive.append(args[0])
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv(name)))
        elif _is_fixed_norm(module):
            handles.append(module.register_forward_pre_hook(before_norm(name)))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(outputs[tensor], norm) for norm, tensor in inputs.items()
            if tensor in outputs and calls[norm] == 1 and calls[outputs[tensor]] == 1]


def _is_fixed_norm(module: Any) -> bool:
    """A batch norm that, in evaluation, applies fixed statistics (torchvision's frozen ones always do)."""
    from torch import nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    return isinstance(module, FrozenBatchNorm2d) or (
        isinstance(module, nn.BatchNorm2d) and module.running_var is not None
    )


def fold_batch_norms(model: "nn.Module", example: "torch.Tensor", keep: Sequence[str] = ()) -> "nn.Module":
    """A copy of ``model`` (in eval mode) with every batch norm that takes only a convolution's output folded into
    it and replaced by the identity; ``model`` itself if none can be, or if the copy's output on ``example``
    differs from the original's by more than float32 rounding (a convolution's output also used elsewhere)."""
    import torch
    from torch import nn

    was_training = model.training
    model.eval()
    try:
        kept = {name.split(":")[0] for name in keep}
        pairs = [(c, b) for c, b in _conv_batch_norm_pairs(model, example) if c not in kept and b not in kept]
        if not pairs:
            return model
        folded = copy.deepcopy(model)
        modules = dict(folded.named_modules())
        with torch.no_grad():
            for conv_name, norm_name in pairs:
                conv, norm = modules[conv_name], modules[norm_name]
                affine = getattr(norm, "affine", True)  # frozen batch norms always are
                scale = 1 / torch.sqrt(norm.running_var + norm.eps)
                scale = norm.weight * scale if affine else scale
                shift = norm.bias if affine else torch.zeros_like(norm.running_mean)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.ndim - 1))).to(conv.weight.dtype))
                conv.bias = nn.Parameter((bias - norm.running_mean) * scale + shift)
                parent, _, child = norm_name.rpartition(".")
                setattr(modules[parent] if parent else folded, child, nn.Identity())
            before, after = model(example), folded(example)
        if not _same_output(before, after):
            return model
        return folded
    finally:
        model.train(was_training)


def _same_output(before: Any, after: Any) -> bool:
    """Whether two outputs of a network (tensors, or dicts and sequences of them) agree to float32 rounding."""
    import torch

    if isinstance(before, dict) and isinstance(after, dict):
        return before.keys() == after.keys() and all(_same_output(before[k], after[k]) for k in before)
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        return len(before) == len(after) and all(_same_output(a, b) for a, b in zip(before, after))
    if not (isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor)) or before.shape != after.shape:
        return False
    scale = max(1.0, float(before.abs().max()))
    return bool((before - after).abs().max() <= 1e-4 * scale)
