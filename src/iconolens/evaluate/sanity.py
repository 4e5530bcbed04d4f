"""The model parameter randomisation test (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018).

A saliency map that explains a model must change when the model's weights are destroyed. The test takes
the trained model's maps of a batch of images, then re-initialises the model's stages from the head
towards the input (see ``iconolens.evaluate.randomisation``) and measures how alike the maps of the
randomised model still are (see ``iconolens.evaluate.similarity``):

- cascading: step ``k`` randomises the ``k`` stages nearest the output together, until nothing learned
  is left;
- independent: step ``k`` randomises the ``k``-th stage alone, every other weight kept.

Every map explains, for each image, the class the *trained* model predicts, in the randomised models too,
so the two maps of a pair answer the same question. Maps are compared at the image's size.

A method whose maps keep a mean Spearman correlation above ``FLAG_THRESHOLD`` once every stage is
randomised is flagged with a sentence: it shows the image and the architecture, not what the model
learned. ``edges`` (Sobel edge strength of the image) is a reference that ignores the model, flagged by
construction: a method whose curves stay near its line tells no more about the model than an edge detector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.device import resolve_device
from iconolens.errors import BadInputError, IconolensError
from iconolens.evaluate import similarity
from iconolens.evaluate.declarations import RANDOMISATION_MEASURES
from iconolens.evaluate.randomisation import RandomisedModels, Stage, randomisation_stages
from iconolens.explain import engine
from iconolens.explain.normalise import normalise_maps
from iconolens.explain.recording import evaluation_mode
from iconolens.progress import progress
from iconolens.run import RunDirectory

#: Cohen's (1988) conventional boundary of a "large" correlation, fixed before looking at any result:
#: with every weight random, a map still sharing that much of its pixel ranking with the trained model's
#: map owes it to the image and the architecture, not to learning.
FLAG_THRESHOLD = 0.5
MEASURES: tuple[str, ...] = tuple(m.key for m in RANDOMISATION_MEASURES)
KINDS = ("cascading", "independent")
DEFAULT_METHODS: tuple[str, ...] = ("cam", "gradcam", "gradcampp", "vbp")

#: ``(model, images (N, 3, H, W), classes (N,)) -> maps (N, h, w)``: the map of class ``classes[i]``
#: for image ``i``, at any resolution (maps are resized to the image's size before comparing).
MapFunction = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class MapMethod:
    """A named way of computing one map per image: a saliency method, a reference, or the user's own."""

    name: str
    compute: MapFunction


def edge_map(model: nn.Module, images: Tensor, classes: Tensor) -> Tensor:
    """Sobel gradient magnitude of the channel mean of the images: a map that never looks at the model."""
    grey = images.detach().float().mean(dim=1, keepdim=True).cpu()
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kernel.view(1, 1, 3, 3))
    gy = F.conv2d(padded, kernel.t().contiguous().view(1, 1, 3, 3))
    return torch.hypot(gx, gy)[:, 0]


#: Maps that do not depend on the model, to compare the saliency methods with.
REFERENCE_METHODS: dict[str, MapFunction] = {"edges": edge_map}


def saliency_method(
    name: str,
    *,
    target_layer: str | None = None,
    activation: engine.Activation = "softmax",
    options: Mapping[str, Any] | None = None,
) -> MapMethod:
    """The engine's method ``name`` (or a reference map) as a ``MapMethod``.

    ``options`` go to ``explain_maps`` (``n``, ``sigma``, ``seed``, ``n_masks``, ``grid``, ``p``); the
    images are grouped by the class to explain, so each group needs the maps of one class only.
    """
    if name in REFERENCE_METHODS:
        return MapMethod(name, REFERENCE_METHODS[name])
    if name not in engine.METHODS:
        known = ", ".join([*engine.METHODS, *REFERENCE_METHODS])
        raise BadInputError(f"unknown saliency method {name!r}; choose from {known}")
    extra = dict(options or {})

    def compute(model: nn.Module, images: Tensor, classes: Tensor) -> Tensor:
        maps: list[Tensor | None] = [None] * images.shape[0]
        for cls in torch.unique(classes).tolist():
            rows = torch.nonzero(classes == cls).flatten()
            result = engine.explain_maps(model, images[rows], name, [int(cls)], target_layer=target_layer,
                                         activation=activation, **extra)
            for row, map_ in zip(rows.tolist(), result.raw[:, 0]):
                maps[row] = map_
        return torch.stack(maps)  # type: ignore[arg-type]

    return MapMethod(name, compute)


def _methods(methods: Sequence[str | MapMethod], **settings: Any) -> list[MapMethod]:
    chosen = [m if isinstance(m, MapMethod) else saliency_method(m, **settings) for m in methods]
    if not chosen:
        raise BadInputError("the list of methods to test is empty")
    names = [m.name for m in chosen]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInputError(f"method {twice[0]!r} is given twice")
    return chosen


def _as_maps(maps: Tensor, count: int, name: str) -> Tensor:
    """A method's output as float64 ``(N, 1, h, w)`` on the CPU, or a sentence naming the method."""
    maps = torch.as_tensor(maps).detach()
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[0] != count:
        raise BadInputError(f"method {name!r} returned maps shaped {tuple(maps.shape)}; expected ({count}, h, w)")
    if maps.shape[-2:].numel() < 2:
        raise BadInputError(f"method {name!r} gives maps of a single pixel at this input size, which cannot change "
                            "shape; explain at a larger image size")
    return maps.to("cpu", torch.float64)[:, None]


@dataclass(frozen=True)
class _Prepared:
    """What the measures read of a batch of maps, computed once for maps compared many times."""

    ranks: np.ndarray
    abs_ranks: np.ndarray
    scaled: np.ndarray
    hog: np.ndarray


def _prepare(maps: Tensor, size: tuple[int, int]) -> _Prepared:
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    signed = maps[:, 0].numpy()
    scaled = normalise_maps(maps)[:, 0].double().numpy()
    return _Prepared(similarity.ranks(signed), similarity.ranks(np.abs(signed)), scaled, similarity.hog(scaled))


def _measures(a: _Prepared, b: _Prepared) -> np.ndarray:
    values = {
        "spearman": similarity.pearson_rows(a.ranks, b.ranks),
        "spearman_abs": similarity.pearson_rows(a.abs_ranks, b.abs_ranks),
        "ssim": similarity.ssim(a.scaled, b.scaled, data_range=1.0),
        "hog": similarity.pearson_rows(a.hog, b.hog),
    }
    return np.stack([values[key] for key in MEASURES], axis=1)


def compare_maps(original: Tensor, randomised: Tensor, size: tuple[int, int]) -> np.ndarray:
    """The measures ``(N, len(MEASURES))`` between two batches of raw maps ``(N, 1, h, w)``.

    Both are resized to ``size`` with bilinear interpolation. Spearman reads the signed maps (min-max
    scaling does not change a ranking) and their absolute values; SSIM and HOG read the maps scaled to [0, 1].
    """
    return _measures(_prepare(original, size), _prepare(randomised, size))


@dataclass(frozen=True)
class SanityResult:
    """Similarities of every method at every step, per image, and the sentences of flagged methods.

    ``cascading[m, k, j, i]``: method ``m``, step ``k`` (stages ``0..k`` randomised), measure
    ``MEASURES[j]``, image ``i``. ``independent`` is alike with stage ``k`` alone randomised (None when
    not computed). ``classes[i]`` is the class the trained model predicts for image ``i``, the one explained.
    """

    methods: tuple[str, ...]
    stages: tuple[Stage, ...]
    classes: tuple[int, ...]
    cascading: np.ndarray
    independent: np.ndarray | None
    flag_threshold: float
    flagged: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    seed: int = 0

    def means(self, kind: str = "cascading") -> np.ndarray:
        """``(methods, steps, measures)`` averages over the images."""
        return self._values(kind).mean(axis=3)

    def _values(self, kind: str) -> np.ndarray:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        values = self.cascading if kind == "cascading" else self.independent
        if values is None:
            raise ValueError("the independent randomisation was not computed")
        return values

    def table(self, kind: str = "cascading") -> list[dict[str, Any]]:
        """One row per method and step: the mean and standard deviation of each measure over the images.

        ``stage`` is the stage randomised at that step: alone (independent), or with every stage above
        it (cascading).
        """
        values = self._values(kind)
        rows = []
        for m, method in enumerate(self.methods):
            for k, stage in enumerate(self.stages):
                row: dict[str, Any] = {"method": method, "step": k + 1, "stage": stage.name}
                row.update({key: float(values[m, k, j].mean()) for j, key in enumerate(MEASURES)})
                row.update({f"{key}_sd": float(values[m, k, j].std()) for j, key in enumerate(MEASURES)})
                row["images"] = values.shape[3]
                rows.append(row)
        return rows

    def fully_randomised_spearman(self) -> dict[str, float]:
        """Each method's mean Spearman correlation with every stage randomised (the flag's value)."""
        j = MEASURES.index("spearman")
        return {method: float(self.cascading[m, -1, j].mean()) for m, method in enumerate(self.methods)}

    def falls_at(self) -> dict[str, str | None]:
        """Per method, the stage from which on the cascade keeps the mean Spearman correlation at the flag
        threshold or below (None: the last step is above it). A late stage means that the maps depend
        on the first layers only."""
        j = MEASURES.index("spearman")
        means = self.cascading[:, :, j].mean(axis=2)
        out: dict[str, str | None] = {}
        for m, method in enumerate(self.methods):
            above = np.nonzero(means[m] > self.flag_threshold)[0]
            first = int(above[-1]) + 1 if above.size else 0
            out[method] = self.stages[first].name if first < len(self.stages) else None
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "test": "model parameter randomisation (Adebayo et al. 2018)",
            "methods": list(self.methods),
            "stages": [{"name": s.name, "modules": list(s.modules), "parameters": list(s.parameters)}
                       for s in self.stages],
            "images": int(self.cascading.shape[3]),
            "explained_classes": list(self.classes),
            "seed": self.seed,
            "measures": [m.to_json() for m in RANDOMISATION_MEASURES],
            "flag_threshold": self.flag_threshold,
            "spearman_fully_randomised": self.fully_randomised_spearman(),
            "spearman_at_most_threshold_from": self.falls_at(),
            "flagged": list(self.flagged),
            "flags": list(self.flags),
            "independent": self.independent is not None,
        }


def flag_sentence(method: str, value: float) -> str:
    return (f"{method} barely changes when the weights are randomised (Spearman {value:.2f} with every stage "
            "randomised): it does not depend on what the model learned")


def _in_batches(method: MapMethod, model: nn.Module, images: Tensor, classes: Tensor, batch_size: int) -> Tensor:
    parts = []
    with evaluation_mode(model):
        for start in range(0, images.shape[0], batch_size):
            stop = start + batch_size
            parts.append(_as_maps(method.compute(model, images[start:stop], classes[start:stop]),
                                  min(stop, images.shape[0]) - start, method.name))
    return torch.cat(parts)


def predicted_classes(model: nn.Module, images: Tensor, batch_size: int = 8) -> Tensor:
    """The class of highest logit for each image, in eval mode; the model's modes are given back."""
    out = []
    with evaluation_mode(model), torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start: start + batch_size])
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                raise BadInputError("the model must return class logits shaped (N, C)")
            out.append(logits.argmax(dim=1).cpu())
    return torch.cat(out)


def parameter_randomisation_test(
    model: nn.Module,
    images: Tensor,
    methods: Sequence[str | MapMethod] = DEFAULT_METHODS,
    *,
    stages: Sequence[Stage] | None = None,
    seed: int = 0,
    independent: bool = True,
    batch_size: int = 8,
    target_layer: str | None = None,
    activation: engine.Activation = "softmax",
    explain_options: Mapping[str, Any] | None = None,
    flag_threshold: float = FLAG_THRESHOLD,
) -> SanityResult:
    """Run the cascading (and, with ``independent``, the independent) randomisation on ``images``.

    ``images`` ``(N, 3, H, W)`` are normalised for the model. ``methods``: engine method names, reference
    names (``edges``) or ``MapMethod`` objects. ``stages`` default to ``randomisation_stages(model)``.
    ``seed`` fixes the random weights (and the methods' own noise, unless ``explain_options`` sets it):
    the same seed gives the same numbers. ``model`` is left exactly as it was, weights and modes.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise BadInputError(f"images must be a non-empty batch shaped (N, 3, H, W); got {shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BadInputError(f"batch_size must be a whole number of at least 1; got {batch_size!r}")
    options = {"seed": seed, **dict(explain_options or {})}
    chosen = _methods(methods, target_layer=target_layer, activation=activation, options=options)
    stages = tuple(randomisation_stages(model) if stages is None else stages)
    if not stages:
        raise BadInputError("the list of stages to randomise is empty")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        images = images.to(device=parameter.device, dtype=parameter.dtype)
    size = (int(images.shape[-2]), int(images.shape[-1]))

    classes = predicted_classes(model, images, batch_size)
    originals = [_prepare(_in_batches(method, model, images, classes.to(images.device), batch_size), size)
                 for method in chosen]
    copies = RandomisedModels(model, stages, seed)
    plans = [("cascading", k, list(range(k + 1))) for k in range(len(stages))]
    if independent:
        plans += [("independent", k, [k]) for k in range(len(stages))]
    results = {kind: np.zeros((len(chosen), len(stages), len(MEASURES), images.shape[0])) for kind in KINDS}
    for kind, k, positions in progress(plans, "randomising", total=len(plans)):
        randomised = copies.with_randomised(positions)
        for m, method in enumerate(chosen):
            maps = _in_batches(method, randomised, images, classes.to(images.device), batch_size)
            results[kind][m, k] = _measures(originals[m], _prepare(maps, size)).T

    final = results["cascading"][:, -1, MEASURES.index("spearman")].mean(axis=1)
    flagged = [(method.name, float(value)) for method, value in zip(chosen, final) if value > flag_threshold]
    return SanityResult(
        methods=tuple(m.name for m in chosen),
        stages=stages,
        classes=tuple(int(c) for c in classes),
        cascading=results["cascading"],
        independent=results["independent"] if independent else None,
        flag_threshold=flag_threshold,
        flagged=tuple(name for name, _ in flagged),
        flags=tuple(flag_sentence(name, value) for name, value in flagged),
        seed=seed,
    )


@dataclass(frozen=True)
class SanitySettings:
    """Options of ``sanity_run``; ``split`` None means val, else test, else every image."""

    images: int = 16
    split: str | None = None
    seed: int = 0
    image_size: int | None = None
    independent: bool = True
    batch_size: int = 8
    target_layer: str | None = None
    flag_threshold: float = FLAG_THRESHOLD
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"


@dataclass(frozen=True)
class SanityOutcome:
    """What ``sanity_run`` measured and wrote; ``problems`` lists images that could not be read."""

    result: SanityResult
    split: str | None
    image_ids: tuple[str, ...]
    input_size: int
    files: dict[str, Path]
    problems: tuple[dict[str, str], ...] = ()


def default_split(splits: Sequence[str | None]) -> str | None:
    """val when the dataset has it, else test, else None (every image): images the model did not learn from."""
    for name in ("val", "test"):
        if name in splits:
            return name
    return None


_X_LABELS = {
    "cascading": "stages randomised, from the head down (each with those left of it)",
    "independent": "stage randomised alone",
}
_TITLES = {
    "cascading": "Cascading parameter randomisation: trained model's map vs randomised model's map",
    "independent": "Independent parameter randomisation: trained model's map vs randomised model's map",
}


def write_sanity_files(result: SanityResult, folder: Path, extra: Mapping[str, Any]) -> dict[str, Path]:
    """The CSV table and PNG curves of each computed kind, and ``summary.json``, in ``folder``.

    Files of the independent randomisation left by an earlier call are removed when it was not computed
    now, so the folder never mixes two tests.
    """
    from iconolens.atomic import write_json_atomically
    from iconolens.report.figures import randomisation_curves
    from iconolens.report.tables import write_csv

    files: dict[str, Path] = {}
    for kind in KINDS:
        if kind == "independent" and result.independent is None:
            for suffix in (".csv", ".png"):
                (folder / f"{kind}{suffix}").unlink(missing_ok=True)
            continue
        files[f"{kind}_table"] = write_csv(folder / f"{kind}.csv", result.table(kind))
        means = result.means(kind)
        lines = {method: {key: means[m, :, j] for j, key in enumerate(MEASURES)}
                 for m, method in enumerate(result.methods)}
        files[f"{kind}_figure"] = randomisation_curves(
            [s.name for s in result.stages], lines, RANDOMISATION_MEASURES, folder / f"{kind}.png",
            _X_LABELS[kind], _TITLES[kind],
        )
    summary = {**result.to_json(), **extra, "files": {k: v.name for k, v in files.items()}}
    files["summary"] = write_json_atomically(folder / "summary.json", summary)
    return files


def _choose(samples: Sequence[Any], seed: int) -> list[Any]:
    """The samples in a seeded random order, so any prefix is a seeded sample of the split."""
    order = np.random.default_rng(seed).permutation(len(samples))
    return [samples[i] for i in order]


def sanity_run(
    run: RunDirectory | str | Path,
    methods: Sequence[str | MapMethod] = DEFAULT_METHODS,
    settings: SanitySettings = SanitySettings(),
) -> SanityOutcome:
    """The parameter randomisation test of a run's model on a seeded sample of its images.

    Writes ``RUN/sanity/``: ``cascading.csv`` and ``.png``, ``independent.csv`` and ``.png`` (unless
    turned off) and ``summary.json`` with the flag sentences. Unreadable images are skipped and replaced
    by the next ones of the sample.
    """
    from iconolens.data.dataset_json import load_dataset_json
    from iconolens.data.images import load_image
    from iconolens.models.backbones import backbone_spec
    from iconolens.models.checkpoint import load_run_model
    from iconolens.models.transforms import image_to_tensor

    s = settings
    run = run if isinstance(run, RunDirectory) else RunDirectory(run)
    if isinstance(s.images, bool) or not isinstance(s.images, int) or s.images < 1:
        raise BadInputError(f"the number of images must be at least 1; got {s.images!r}")
    _methods(methods)  # unknown names are reported before anything is loaded
    device = resolve_device(s.device)
    if not run.dataset_json.is_file():
        raise BadInputError("no dataset.json in the run folder (create it with `iconolens data split`)", run.root)
    dataset = load_dataset_json(run.dataset_json)
    model, meta = load_run_model(run)
    model = model.to(device)
    if s.image_size is not None:
        smallest = max(16, backbone_spec(meta.backbone).min_input_size)
        if s.image_size < smallest:
            raise BadInputError(f"the input size of a {meta.backbone} model must be at least {smallest} pixels, "
                                f"got {s.image_size}")
        meta = replace(meta, input_size=s.image_size)
    split = s.split if s.split is not None else default_split([x.split for x in dataset.samples])
    samples = [x for x in dataset.samples if split is None or x.split == split]
    if not samples:
        raise BadInputError(f"no image of the dataset is in split {split!r}", run.dataset_json)

    tensors, ids, problems = [], [], []
    for sample in _choose(samples, s.seed):
        if len(tensors) == s.images:
            break
        try:
            tensors.append(image_to_tensor(load_image(sample.path, max_pixels=s.max_pixels), meta))
            ids.append(sample.id)
        except IconolensError as exc:
            problems.append({"id": sample.id, "path": str(sample.path), "message": str(exc)})
    if not tensors:
        where = f"split {split!r}" if split else "the dataset"
        raise BadInputError(f"no image of {where} could be read ({problems[0]['message']})", run.dataset_json)

    result = parameter_randomisation_test(
        model, torch.stack(tensors), methods, seed=s.seed, independent=s.independent, batch_size=s.batch_size,
        target_layer=s.target_layer, activation="sigmoid" if meta.task == "multilabel" else "softmax",
        flag_threshold=s.flag_threshold,
    )
    extra = {"split": split, "image_ids": ids, "input_size": meta.input_size, "backbone": meta.backbone,
             "class_names": [meta.classes[c] for c in result.classes], "problems": problems}
    files = write_sanity_files(result, run.sanity_dir, extra)
    return SanityOutcome(result, split, tuple(ids), meta.input_size, files, tuple(problems))
