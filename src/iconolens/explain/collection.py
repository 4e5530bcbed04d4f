"""``explain_run``: saliency maps for every image of a run, written to its map stores, resumable.

The per-batch work is :func:`iconolens.explain.engine.explain_many` (methods that can share a forward pass share
it); this is the loop over a run's images that the CLI, the weakly supervised pipeline and Python users share.
Images are decoded in ``workers`` processes while the network runs (``iconolens.data.stream``), on ``device``,
in ``precision`` (``iconolens.inference``).
Images that already have maps are skipped, so an interrupted run resumes; images that cannot be read are listed
in ``maps/problems.json`` and skipped.

``image_size`` explains at another input size than the classifier was trained at. A network ending in global
average pooling accepts any size, and its maps grow with the input (7 x 7 at 224 px, 14 x 14 at 448 px for a
stride-32 network): finer maps separate figures standing close together. A vision transformer with learnt
position embeddings (ViT-B/16) takes its own input size only, and another one is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from iconolens.atomic import write_json_atomically
from iconolens.data.images import DEFAULT_MAX_PIXELS
from iconolens.data.stream import decoded_batches
from iconolens.device import resolve_device
from iconolens.errors import BadInputError
from iconolens.explain.background_writes import BackgroundWriter
from iconolens.explain.engine import (
    CLASS_AGNOSTIC,
    check_parameters,
    explain_many,
    resolve_classes,
)
from iconolens.explain.layers import resolve_target_layer
from iconolens.explain.store import MapStore
from iconolens.inference import check_precision, network_on
from iconolens.models.backbones import backbone_spec
from iconolens.models.checkpoint import load_checkpoint, read_meta, run_model_dir
from iconolens.models.transforms import normalise
from iconolens.progress import progress
from iconolens.run import RunDirectory


@dataclass(frozen=True)
class ExplainSettings:
    """Every option of the methods; only those a method uses are recorded beside its maps."""

    n: int = 5
    sigma: float = 0.15
    seed: int = 0
    masks: int = 1000
    grid: int = 7
    p: float = 0.5
    batch_size: int = 8
    target_layer: str | None = None
    image_size: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 1
    device: str = "auto"
    precision: str = "full"


@dataclass(frozen=True)
class ExplainOutcome:
    """What a call wrote: per method, images written now and images already done before."""

    written: dict[str, int]
    done_before: dict[str, int]
    problems: list[dict[str, str]] = field(default_factory=list)


def method_parameters(method: str, target_layer: str, settings: ExplainSettings, input_size: int) -> dict[str, Any]:
    """The parameters recorded beside a method's maps (only those that change its result)."""
    params: dict[str, Any] = {"target_layer": target_layer, "score": "logit"}
    if method == "smoothgradcampp":
        params.update(n=settings.n, sigma=settings.sigma, seed=settings.seed)
    elif method == "rise":
        params = {"masks": settings.masks, "grid": settings.grid, "p": settings.p, "seed": settings.seed,
                  "score": "probability"}
    elif method == "scorecam":
        params["score"] = "probability"
    elif method in CLASS_AGNOSTIC:
        params = {"note": "class-independent: every class has the same map"}
        if method == "eigencam":
            params["target_layer"] = target_layer
    params["input_size"] = input_size
    if settings.precision != "full":  # maps of another precision are not mixed into a store on resuming
        params["precision"] = settings.precision
    return params


@dataclass
class PreparedRun:
    """Everything both engines need before the first batch: the model, what to explain, and what is left."""

    model: Any
    meta: Any
    chosen: list[str]
    indices: list[int]
    activation: str
    target: str
    samples: list[Any]
    stores: dict[str, MapStore]
    pending: list[Any]
    done_before: dict[str, int]


def load_explained_model(model_dir: Path, image_size: int | None) -> tuple[Any, Any]:
    """The checkpoint's model and meta, the meta's input size replaced by ``image_size`` if given."""
    model, meta = load_checkpoint(model_dir)
    if image_size is not None:
        meta = replace(meta, input_size=image_size)
    return model, meta


def prepare_explain(
    run: RunDirectory,
    methods: Sequence[str],
    classes: Sequence[str] | None,
    split: str | None,
    settings: ExplainSettings,
) -> PreparedRun:
    """Check the options, load the model, initialise one store per method and list the images still to do."""
    from iconolens.data.dataset_json import load_dataset_json

    s = settings
    check_precision(s.precision)
    for method in methods:
        check_parameters(method, s.n, s.sigma, s.masks, s.grid, s.p, "softmax")
    if not run.dataset_json.is_file():
        raise BadInputError("no dataset.json in the run folder (create it with `iconolens data split`)", run.root)
    dataset = load_dataset_json(run.dataset_json)
    model_dir = run_model_dir(run)
    if s.image_size is not None:
        if s.image_size < 16:
            raise BadInputError(f"the input size must be at least 16 pixels, got {s.image_size}")
        backbone = read_meta(model_dir).backbone
        fixed = backbone_spec(backbone).fixed_input_size
        if fixed is not None and s.image_size != fixed:
            raise BadInputError(
                f"a {backbone} classifier takes images of exactly {fixed} pixels only, so it cannot be "
                f"explained at {s.image_size}; use its own input size"
            )
    model, meta = load_explained_model(model_dir, s.image_size)
    class_names = list(meta.classes)
    chosen = list(classes) if classes else class_names
    indices = [int(i) for i in resolve_classes(chosen, len(class_names), class_names)]
    activation = "sigmoid" if meta.task == "multilabel" else "softmax"
    target = resolve_target_layer(model, s.target_layer).describe()

    samples = list(dataset.samples)
    if split is not None:
        samples = [x for x in samples if x.split == split]
        if not samples:
            raise BadInputError(f"no image of the dataset is in split {split!r}", run.dataset_json)
    stores = {m: MapStore(run.maps_dir(m)) for m in methods}
    for method, store in stores.items():
        store.initialise(chosen, method, method_parameters(method, target, s, meta.input_size))
    pending = [x for x in samples if any(not store.has(x.id) for store in stores.values())]
    done_before = {m: sum(store.has(x.id) for x in samples) for m, store in stores.items()}
    return PreparedRun(model, meta, chosen, indices, activation, target, samples, stores, pending, done_before)


def explain_batch(
    model: Any,
    meta: Any,
    images: Any,
    loaded: Sequence[Any],
    stores: dict[str, MapStore],
    indices: Sequence[int],
    target: str,
    activation: str,
    settings: ExplainSettings,
    device: Any,
    writer: BackgroundWriter | None = None,
) -> dict[str, int]:
    """Explain one decoded batch (uint8 ``images`` of the ``loaded`` samples) and write what each store lacks.

    Shared by both engines so that equal batches give byte-identical maps. With a ``writer`` the files are
    written from its thread. Returns the images written (or queued) per method.
    """
    s = settings
    written = dict.fromkeys(stores, 0)
    write = writer.write if writer is not None else lambda store, *item: store.write(*item)
    tensors = normalise(images, meta.mean, meta.std).to(device)
    # Methods missing the same images are computed together, sharing forward passes.
    groups: dict[tuple[int, ...], list[str]] = {}
    for method, store in stores.items():
        wanted = tuple(i for i, x in enumerate(loaded) if not store.has(x.id))
        if wanted:
            groups.setdefault(wanted, []).append(method)
    for wanted, group in groups.items():
        subset = tensors[list(wanted)]
        results = explain_many(
            model, subset, group, list(indices), target_layer=target, activation=activation,
            n=s.n, sigma=s.sigma, seed=s.seed, n_masks=s.masks, grid=s.grid, p=s.p, precision=s.precision,
        )
        for method, result in results.items():
            for row, i in enumerate(wanted):
                write(stores[method], loaded[i].id, result.raw[row].float().cpu().numpy(),
                      result.scores[row].cpu().numpy())
                written[method] += 1
    return written


def explain_run(
    run: RunDirectory,
    methods: Sequence[str],
    classes: Sequence[str] | None = None,
    split: str | None = None,
    settings: ExplainSettings = ExplainSettings(),
) -> ExplainOutcome:
    """Compute and store the maps of ``methods`` for every image of the run (or of one ``split``).

    ``classes``: names to explain (default every class of the run's model). Raw maps go to
    ``RUN/maps/<method>/``; the class probabilities of every image are stored beside them.
    """
    s = settings
    device = resolve_device(s.device)
    prepared = prepare_explain(run, methods, classes, split, s)
    written = dict.fromkeys(methods, 0)
    problems: list[dict[str, str]] = []

    meta = prepared.meta
    model = network_on(prepared.model, device, meta.input_size, keep=[prepared.target])
    total = -(-len(prepared.pending) // s.batch_size)
    stream = decoded_batches(
        prepared.pending, meta.input_size, s.batch_size, workers=s.workers, max_pixels=s.max_pixels
    )
    with BackgroundWriter() as writer:
        for batch in progress(stream, "explaining", total=total):
            problems.extend(batch.problems)
            counts = explain_batch(
                model, meta, batch.images, batch.samples, prepared.stores, prepared.indices, prepared.target,
                prepared.activation, s, device, writer,
            )
            for method, count in counts.items():
                written[method] += count
    if problems:
        write_json_atomically(run.maps_root / "problems.json", problems)
    return ExplainOutcome(written, prepared.done_before, problems)
