"""The SimCLR pretext task and the cached pretext features (TypiClust's and ProbCover's representation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import albench.strategies.pretext.features as features_mod
from albench.config import DatasetConfig
from albench.data.registry import load_dataset
from albench.strategies.pretext import PretextSpec, make_task, pretext_features, pretext_losses
from albench.strategies.pretext.features import features_key_fields
from albench.strategies.pretext.cache import cache_key
from albench.strategies.pretext.tasks import Normalizer, nt_xent


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetConfig("digits"))


def _spec(**kw) -> PretextSpec:
    base = dict(task="simclr", options=make_task("simclr").opts, epochs=1, batch_size=128, lr=0.1,
                model="small-cnn", model_params={"width": 4}, selection="final")
    base.update(kw)
    return PretextSpec(**base)


def test_nt_xent_on_two_pairs_equals_the_hand_value():
    # views identical: anchor (1,0) sees its positive at cosine 1 and two negatives at cosine 0
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss, hit = nt_xent(z, z.clone(), 0.1)
    assert loss.tolist() == pytest.approx([math.log(1 + 2 * math.exp(-10))] * 2, abs=1e-6)  # ~9.08e-5 nats
    assert hit.tolist() == [1.0, 1.0]
    # views swapped: each positive is orthogonal (cosine 0) and one negative is identical (cosine 1);
    # the lengths do not matter (projections are normalised)
    loss, hit = nt_xent(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[0.0, 1.0], [0.5, 0.0]]), 0.1)
    assert loss.tolist() == pytest.approx([math.log(2 + math.exp(10))] * 2, rel=1e-6)
    assert hit.tolist() == [0.0, 0.0]


def test_simclr_views_are_random_but_reproducible():
    task = make_task("simclr")
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    norm = Normalizer((0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    a = task.view(x, norm, torch.Generator().manual_seed(0))
    b = task.view(x, norm, torch.Generator().manual_seed(0))
    c = task.view(x, norm, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    # a crop of the whole image, unflipped and unjittered, is the image itself
    plain = make_task("simclr", {"crop_scale": 1.0, "hflip": False, "jitter": 0.0})
    gray_free = x[:, :1].expand(-1, 3, -1, -1).contiguous()  # grayscale images: the grayscale draw is a no-op
    v = plain.view(gray_free, norm, torch.Generator().manual_seed(0))
    assert torch.allclose(v, norm(gray_free), atol=1e-4)


def test_simclr_options_are_validated():
    from albench.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_task("simclr", {"tau": 0})
    assert err.value.field == "params.pretext_options.tau"
    with pytest.raises(ConfigError):
        make_task("simclr", {"crop_scale": 1.5})


def test_features_are_unit_norm_pooled_embeddings_of_the_pool(digits, one_torch_thread):
    res = pretext_features(_spec(), pool_images=digits.x_train[:300], mean=digits.mean, std=digits.std,
                           log=lambda s: None)
    assert res.features.shape == (300, 32) and res.features.dtype == np.float32  # small-cnn width 4: 8 * 4
    assert np.allclose(np.linalg.norm(res.features, axis=1), 1.0, atol=1e-5)
    assert res.cache == "off" and np.isfinite(res.history[0]["train_loss"])
    raw = pretext_features(_spec(), pool_images=digits.x_train[:300], mean=digits.mean, std=digits.std,
                           normalize=False, log=lambda s: None)
    assert not np.allclose(np.linalg.norm(raw.features, axis=1), 1.0)  # the same run, unnormalised
    assert np.allclose(raw.features / np.linalg.norm(raw.features, axis=1, keepdims=True), res.features, atol=1e-5)


def test_second_call_reads_the_cached_features_and_a_pt4al_loss_call_reuses_the_network(
        digits, tmp_path, monkeypatch, one_torch_thread):
    kw = dict(pool_images=digits.x_train[:200], mean=digits.mean, std=digits.std, cache_dir=tmp_path / "pretext",
              log=lambda s: None)
    first = pretext_features(_spec(), test_images=digits.x_test[:30], **kw)
    assert first.cache == "miss"

    def no_training(*a, **k):
        raise AssertionError("the pretext network was retrained")

    monkeypatch.setattr(features_mod, "fit_pretext", no_training)
    second = pretext_features(_spec(), **kw)  # the features do not depend on the test images
    assert second.cache == "hit" and second.key == first.key
    assert np.array_equal(second.features, first.features)
    assert second.train_seconds == pytest.approx(first.train_seconds)
    with pytest.raises(AssertionError, match="retrained"):  # a changed width misses
        pretext_features(_spec(model_params={"width": 8}), **kw)
    import albench.strategies.pretext.losses as losses_mod

    monkeypatch.setattr(losses_mod, "fit_pretext", no_training)
    losses = pretext_losses(_spec(), test_images=digits.x_test[:30], **kw)
    assert losses.cache == "hit" and losses.pool_loss.shape == (200,) and losses.test_loss.shape == (30,)


def test_features_key_covers_every_param_that_changes_them():
    base = dict(pool_fingerprint="p", mean=(0.5,), std=(0.2,), device=torch.device("cpu"), amp=False)
    variants = [dict(epochs=2), dict(batch_size=64), dict(lr=0.05), dict(momentum=0.5), dict(weight_decay=0.0),
                dict(model="resnet18-cifar"), dict(model_params={"width": 8}), dict(selection="best"), dict(seed=1),
                dict(channels_last=False), dict(options=make_task("simclr", {"tau": 0.2}).opts),
                dict(options=make_task("simclr", {"dim": 64}).opts), dict(task="rotation", options={})]
    keys = {cache_key(features_key_fields(_spec(), **base))}
    for v in variants:
        keys.add(cache_key(features_key_fields(_spec(**v), **base)))
    for v in [dict(pool_fingerprint="q"), dict(mean=(0.4,)), dict(std=(0.3,)), dict(amp=True),
              dict(device=torch.device("cuda"))]:
        keys.add(cache_key(features_key_fields(_spec(), **{**base, **v})))
    assert len(keys) == 1 + len(variants) + 5


def test_every_task_embeds_with_its_backbone(digits, one_torch_thread):
    from albench.strategies.pretext.features import extract_embeddings

    x = digits.x_train[:10]
    for name in ("rotation", "jigsaw", "simsiam", "simclr"):
        task = make_task(name)
        net = task.build("small-cnn", {"width": 4}, 1, (8, 8))
        e = extract_embeddings(task, net, x, mean=digits.mean, std=digits.std, device=torch.device("cpu"))
        assert e.shape == (10, 32) and np.isfinite(e).all()
