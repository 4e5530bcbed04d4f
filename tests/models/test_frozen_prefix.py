"""Partial fine-tuning runs the frozen stages once per image, and trains exactly as the whole network does."""

from __future__ import annotations

import torch

from iconolens.models import training
from iconolens.models.backbones import build_classifier, frozen_prefix_modules
from iconolens.models.frozen_prefix import cacheable_prefix, prefix_outputs, skipping
from iconolens.models.training import TrainingConfig, train_classifier

CONFIG = TrainingConfig(backbone="mobilenet_v2", mode="fine-tune", frozen_fraction=0.5, epochs=2, patience=5,
                        image_size=32, batch_size=4, learning_rate=0.003)


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "model" / "weights.pt", weights_only=True)


def test_cached_prefix_trains_the_same_weights_as_the_whole_network(tiny_squares, tmp_path, monkeypatch):
    train_classifier(tiny_squares, CONFIG, tmp_path / "cached")
    monkeypatch.setattr(training, "cacheable_prefix", lambda model, frozen: [])
    train_classifier(tiny_squares, CONFIG, tmp_path / "whole")
    a, b = _weights(tmp_path / "cached"), _weights(tmp_path / "whole")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_the_frozen_stages_run_once_per_image_however_many_epochs(tiny_squares, tmp_path, monkeypatch):
    calls: list[int] = []
    real_build = training.build_classifier

    def counting_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        # the stem's convolution: a hook on a skipped stage would still fire, on the stage's input
        model.features[0][0].register_forward_hook(lambda m, i, o: calls.append(int(i[0].shape[0])))
        return model

    monkeypatch.setattr(training, "build_classifier", counting_build)
    seen = {}
    for epochs in (1, 3):
        calls.clear()
        train_classifier(tiny_squares, TrainingConfig(**{**CONFIG.__dict__, "epochs": epochs}), tmp_path / str(epochs))
        seen[epochs] = sum(calls)
    assert seen[1] == seen[3]


def test_skipping_leaves_parameters_and_restores_the_stages():
    model = build_classifier("mobilenet_v2", 3, pretrained=False)
    frozen = frozen_prefix_modules(model, 0.5)
    for module in frozen:
        module.requires_grad_(False)
    prefix = cacheable_prefix(model, frozen)
    assert len(prefix) > 0 and prefix == list(model.features)[: len(prefix)]
    keys = list(model.state_dict())
    model.eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        whole = model(images)
        cached = prefix_outputs(model, prefix, images, lambda x: x, batch_size=2)
        with skipping(prefix):
            assert list(model.state_dict()) == keys
            rest = model(cached)
        again = model(images)
    torch.testing.assert_close(rest, whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, whole)


def test_trainable_or_out_of_order_stages_are_not_cached_and_a_large_cache_is_refused():
    model = build_classifier("mobilenet_v2", 3, pretrained=False)
    stages = list(model.features)
    assert cacheable_prefix(model, stages[:4]) == []  # still trainable
    for module in stages[:4]:
        module.requires_grad_(False)
    assert cacheable_prefix(model, stages[1:4]) == []  # not the leading stages
    assert cacheable_prefix(model, stages[:4]) == stages[:4]
    assert prefix_outputs(model, stages[:4], torch.rand(2, 3, 32, 32), lambda x: x, max_bytes=16) is None
