"""Fixtures shared by every area's tests."""

from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest

# People-Art lives beside the repository (never inside it); ICONOLENS_PEOPLEART points elsewhere.
PEOPLEART = Path(
    os.environ.get("ICONOLENS_PEOPLEART")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peopleart"
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def peopleart_root() -> Path:
    """The real People-Art collection beside the repository; tests needing it skip when it is absent."""
    if not (PEOPLEART / "Annotations" / "person_train.txt").exists():
        pytest.skip(f"People-Art not found at {PEOPLEART}")
    return PEOPLEART


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run ``iconolens ARGS...`` through the real entry point; returns (exit code, stdout, stderr)."""
    import sys

    from iconolens.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["iconolens", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


#: Classes of the small random classifier shared by the command tests.
SAINTS = ("Peter", "Paul", "Mary")


@pytest.fixture(scope="session")
def saints_checkpoint(tmp_path_factory) -> Path:
    """A small random ResNet-18 checkpoint for ``SAINTS`` at 64 px; runs copy it into their model/ folder."""
    import torch

    from iconolens.models.backbones import build_classifier
    from iconolens.models.checkpoint import save_checkpoint
    from iconolens.models.meta import ModelMeta

    torch.manual_seed(0)
    model = build_classifier("resnet18", len(SAINTS), pretrained=False)
    folder = tmp_path_factory.mktemp("checkpoint") / "model"
    save_checkpoint(folder, model, ModelMeta(classes=SAINTS, backbone="resnet18", input_size=64))
    return folder


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs, shared by a module's tests that do not start their own."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def crashing_once(actor_class: type, flag: Path) -> type:
    """A subclass of a Ray engine's actor whose worker process dies on its second call, once per ``flag`` file
    (which then holds the dead worker's pid). An actor that takes runs of batches (``run_many``) dies after
    writing the first half of its second run, so that the retried run finds part of its work already done."""

    class Crashing(actor_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.calls = 0

        def _second_call(self) -> bool:
            self.calls += 1
            return self.calls == 2 and not flag.exists()

        def _die(self) -> None:
            flag.write_text(str(os.getpid()))
            os._exit(1)

        def run(self, batch):
            if self._second_call():
                self._die()
            return super().run(batch)

    if not hasattr(actor_class, "run_many"):
        return Crashing

    class CrashingMidRun(Crashing):
        def run_many(self, batches):
            if self._second_call():
                super().run_many(batches[: (len(batches) + 1) // 2])
                self._die()
            return super().run_many(batches)

    return CrashingMidRun


@pytest.fixture
def crashing_actor():
    """``crashing_actor(ActorClass, flag)``: :func:`crashing_once`, picklable by value for Ray's workers."""
    import sys

    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    return crashing_once
