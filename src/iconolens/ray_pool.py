"""Batches of a stage spread over Ray actors, each holding the stage's model: the engine behind ``--engine ray``.

Every stage that runs on Ray follows one pattern: the driver prepares the work exactly as the in-process engine
does and cuts it into the same batches; a Ray Data dataset holds them in rows, and ``map_batches`` sends the rows
to a fixed pool of actors. Each actor wraps a stage's actor class, built once per worker from plain arguments
(paths and settings, never a model); it processes one batch per ``run`` call with the library's own per-batch
function (or a run of them per ``run_many`` call, to overlap one batch's reading and writing with the next),
writes what it produces into the run with the same atomic writes, and returns what the driver must reduce
(counts, boxes, problems). Actors restart and their calls are retried when a worker dies (``max_restarts=-1,
max_task_retries=-1``), so a call must be safe to repeat: a stage skips what its outputs already hold.

A row holds a run of consecutive batches, at most ``ROWS_PER_ACTOR`` rows per actor: Ray Data costs tens of
milliseconds per row, which one row per batch of eight images paid hundreds of times, while a few rows per
actor still let an actor that finishes early take the next one. Rows travel pickled, and the replies come back
in the order of the batches. The workers must see the run directory (a local Ray, or a cluster on a shared file
system).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from iconolens.errors import BadInputError
from iconolens.progress import progress

ENGINES = ("inprocess", "ray")
#: Rows of work per actor: enough for the pool to even out, few enough that Ray Data's cost per row stays small.
ROWS_PER_ACTOR = 8
ENGINE_HELP = ("inprocess (default) or ray: batches spread over Ray actors, one per CPU, each with its own copy of "
               "the model, writing the same files (pip install 'iconolens[ray]').")
ADDRESS_HELP = ("Ray engine: an existing cluster, from a node of it (auto, or HOST:6379); default: a local Ray started "
                "for the command.")
THREADS_HELP = ("CPU threads for PyTorch in this process (default: PyTorch's own choice, one per core); the ray "
                "engine's actors use one each, and an in-process run gives their files byte for byte with 1.")


def check_engine(engine: str, address: str | None) -> None:
    """Refuse an unknown engine, a cluster address given to the in-process one, or a Ray Client address."""
    if engine not in ENGINES:
        raise BadInputError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise BadInputError("--address is for the ray engine; add --engine ray")
    if address is not None and address.strip().lower().startswith("ray://"):
        raise BadInputError(f"the ray engine runs on Ray Data, which Ray Client addresses ({address}) do not carry; "
                            "run the command on a node of the cluster with --address auto")


def use_threads(threads: int | None) -> None:
    """PyTorch's CPU threads in this process, when a command is given ``--threads``."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def import_ray() -> Any:
    """Ray, or one sentence saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data needs the "data" extra
    except ImportError:
        raise BadInputError("the ray engine needs Ray Data: pip install 'iconolens[ray]'") from None
    return ray


def actor_gpus(device: str) -> float:
    """The GPUs each actor asks Ray for: one when the stage runs on CUDA (Ray hides the GPUs from an actor that
    asks for none), else none."""
    text = (device or "auto").strip().lower()
    if text == "auto":
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0
    return 1.0 if text.startswith("cuda") else 0.0


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Ray, connected: to ``address``, to an already initialised Ray, or to a local one with ``workers or 2`` CPUs
    started here and shut down on leaving."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address is not None:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BadInputError(f"could not connect to the Ray cluster at {address} ({reason}); on a node of "
                                    "the cluster, --address auto finds it") from None
        else:
            ray.init(num_cpus=workers or 2, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


class BatchesOnActor:
    """Ray Data's callable class around a stage's actor: every row is a pickled run of batches, its reply the
    pickled list of their replies."""

    def __init__(self, actor_class: type, actor_args: Sequence[Any]) -> None:
        self.actor = actor_class(*actor_args)

    def _run(self, batches: list[Any]) -> list[Any]:
        run_many = getattr(self.actor, "run_many", None)  # an actor that overlaps its batches' work
        return run_many(batches) if run_many is not None else [self.actor.run(batch) for batch in batches]

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        replies = [pickle.dumps(self._run(pickle.loads(run))) for run in rows["batches"]]
        return {"first": rows["first"], "replies": np.array(replies, dtype=object)}


def map_on_actors(
    actor_class: type,
    actor_args: Sequence[Any],
    batches: Sequence[Any],
    address: str | None = None,
    workers: int | None = None,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
) -> list[Any]:
    """``actor.run(batch)`` for every batch, on one ``actor_class(*actor_args)`` per CPU (or ``workers`` actors);
    the replies in the order of ``batches``. Progress is shown per row of batches as they come back."""
    if not batches:
        return []
    with ray_session(address, workers) as ray:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_actor, 1e-9)))
        count = min(count, len(batches))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the stages draw their own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        runs = np.array_split(np.arange(len(batches)), min(len(batches), count * ROWS_PER_ACTOR))
        rows = ray.data.from_items(
            [{"first": int(run[0]), "batches": pickle.dumps([batches[i] for i in run])} for run in runs],
            override_num_blocks=len(runs),
        )
        replies = rows.map_batches(
            BatchesOnActor, fn_constructor_args=(actor_class, tuple(actor_args)), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=count), num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
            max_restarts=-1, max_task_retries=-1,
        )
        ordered: list[Any] = [None] * len(batches)
        for row in progress(replies.iter_rows(), "batches on Ray", total=len(runs)):
            first = int(row["first"])
            for offset, reply in enumerate(pickle.loads(row["replies"])):
                ordered[first + offset] = reply
        return ordered
