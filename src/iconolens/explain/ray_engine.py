"""``explain_run_on_ray``: the explain stage spread over Ray actors, same maps as :func:`explain_run`.

The driver prepares the run exactly as the in-process engine does (same checks, same stores, same pending
images) and cuts the pending images into the same batches of ``settings.batch_size`` in the same order, so
every image is explained in the same batch composition and its maps are byte-identical. Runs of batches go to
actors that hold the model (loaded once per actor from the run's checkpoint); an actor decodes the next batch
while it explains one with the shared :func:`explain_batch`, and writes the stores itself, from a thread, with
the same atomic writes: the workers must see the run directory (a local Ray, or a cluster on a shared file
system).

Failures and resuming follow :mod:`iconolens.ray_pool`: a retried batch skips the images its stores already
hold, so nothing is written twice and files are always whole; if the driver dies, a new call resumes from the
stores like the in-process engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iconolens.atomic import write_json_atomically
from iconolens.explain.background_writes import BackgroundWriter
from iconolens.explain.collection import (
    ExplainOutcome,
    ExplainSettings,
    explain_batch,
    load_explained_model,
    prepare_explain,
)
from iconolens.explain.store import MapStore
from iconolens.inference import network_on
from iconolens.ray_pool import actor_gpus, import_ray, map_on_actors
from iconolens.run import RunDirectory


class ExplainActor:
    """Holds the run's model and explains whole batches, writing the maps into the run's stores."""

    def __init__(
        self,
        model_dir: str,
        store_dirs: dict[str, str],
        indices: Sequence[int],
        target: str,
        activation: str,
        settings: ExplainSettings,
    ) -> None:
        from iconolens.device import resolve_device

        self.device = resolve_device(settings.device)
        model, self.meta = load_explained_model(Path(model_dir), settings.image_size)
        self.model = network_on(model, self.device, self.meta.input_size, keep=[target])
        self.stores = {m: MapStore(d) for m, d in store_dirs.items()}
        self.indices, self.target, self.activation, self.settings = list(indices), target, activation, settings

    def _decoded(self, batch: list[Any]) -> Any:
        """The batch's images still missing from some store, decoded (None when every store holds them all: a
        retried batch after a crash leaves out what is already written)."""
        from iconolens.data.stream import decoded_batches

        todo = [x for x in batch if any(not store.has(x.id) for store in self.stores.values())]
        if not todo:
            return None
        return next(iter(decoded_batches(todo, self.meta.input_size, len(todo), workers=0,
                                         max_pixels=self.settings.max_pixels)))

    def run(self, batch: list[Any]) -> tuple[dict[str, int], list[dict[str, str]]]:
        """Explain one batch: the images written per method and the unreadable ones."""
        return self.run_many([batch])[0]

    def run_many(self, batches: list[list[Any]]) -> list[tuple[dict[str, int], list[dict[str, str]]]]:
        """Explain a run of batches; per batch, the images written per method and the unreadable ones.

        The next batch is decoded in a thread while this one is explained, and the map files are written from
        another (decoding and syncing files release the GIL), as the in-process engine overlaps them; every
        file is on disk when this returns.
        """
        from concurrent.futures import ThreadPoolExecutor

        replies = []
        with ThreadPoolExecutor(1, thread_name_prefix="iconolens-decode") as decoder, BackgroundWriter() as writer:
            ahead = decoder.submit(self._decoded, batches[0]) if batches else None
            for k in range(len(batches)):
                decoded = ahead.result()
                ahead = decoder.submit(self._decoded, batches[k + 1]) if k + 1 < len(batches) else None
                written = dict.fromkeys(self.stores, 0)
                if decoded is not None and decoded.samples:
                    written = explain_batch(
                        self.model, self.meta, decoded.images, decoded.samples, self.stores, self.indices,
                        self.target, self.activation, self.settings, self.device, writer,
                    )
                replies.append((written, decoded.problems if decoded is not None else []))
        return replies


def explain_run_on_ray(
    run: RunDirectory,
    methods: Sequence[str],
    classes: Sequence[str] | None = None,
    split: str | None = None,
    settings: ExplainSettings = ExplainSettings(),
    address: str | None = None,
    workers: int | None = None,
) -> ExplainOutcome:
    """Like :func:`explain_run`, on Ray: one actor per CPU (or ``workers`` actors), each with its own model.

    ``address``: an existing Ray cluster, from one of its nodes (``auto``); without it an already initialised Ray is
    used, or a local one with ``workers or 2`` CPUs is started and shut down by this call.
    """
    import_ray()  # before anything is written
    s = settings
    prepared = prepare_explain(run, methods, classes, split, s)
    del prepared.model  # the actors load their own copy
    pending = prepared.pending
    batches = [pending[i:i + s.batch_size] for i in range(0, len(pending), s.batch_size)]
    store_dirs = {m: str(store.directory) for m, store in prepared.stores.items()}
    replies = map_on_actors(
        ExplainActor, (str(run.model_dir), store_dirs, prepared.indices, prepared.target, prepared.activation, s),
        batches, address=address, workers=workers, gpus_per_actor=actor_gpus(s.device),
    )
    problems = [problem for _, batch_problems in replies for problem in batch_problems]

    # Counted from the stores, not from the actors' replies: a batch cut short by a crash wrote files too.
    written = {
        m: sum(store.has(x.id) for x in prepared.samples) - prepared.done_before[m]
        for m, store in prepared.stores.items()
    }
    if problems:
        write_json_atomically(run.maps_root / "problems.json", problems)
    return ExplainOutcome(written, prepared.done_before, problems)
