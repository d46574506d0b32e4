"""Pretext tasks: each trains on the digits pool on CPU, losses are per image, the cache is reused."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import albench.strategies.pretext.losses as losses_mod
from albench.config import DatasetConfig
from albench.data.registry import load_dataset
from albench.strategies.pretext import (PretextCache, PretextInputError, PretextSpec, cache_key, key_fields, make_task,
                                pretext_losses)
from albench.strategies.pretext.color import rgb_to_lab
from albench.strategies.pretext.tasks import Normalizer, jigsaw_permutations


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the shared 2-core machine is faster that way, and CPU numbers reproducible."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetConfig("digits"))


def _spec(task: str, **kw) -> PretextSpec:
    base = dict(task=task, options=make_task(task).opts, epochs=1, batch_size=256, model="small-cnn",
                model_params={"width": 8}, selection="final")
    base.update(kw)
    return PretextSpec(**base)


def _coloured(x: torch.Tensor) -> torch.Tensor:
    """Digits drawn in colour: a fixed colour map of the intensity (ink turns from blue to orange)."""
    v = x.float()
    rgb = torch.cat([v, 255.0 - 0.5 * v, 255.0 - v], dim=1)
    return rgb.round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "simsiam"])
def test_each_task_trains_on_the_digits_pool(digits, task):
    res = pretext_losses(_spec(task), pool_images=digits.x_train, test_images=digits.x_test, mean=digits.mean,
                         std=digits.std, log=lambda s: None)
    assert res.pool_loss.shape == (digits.x_train.shape[0],) and res.pool_loss.dtype == np.float32
    assert res.test_loss.shape == (digits.x_test.shape[0],)
    assert np.isfinite(res.pool_loss).all() and np.isfinite(res.test_loss).all()
    assert res.pool_loss.std() > 0  # the losses rank the images
    assert res.cache == "off" and res.train_seconds > 0


def test_colorization_trains_on_the_digits_pool_in_colour(digits):
    pool, test = _coloured(digits.x_train), _coloured(digits.x_test)
    spec = _spec("colorization", options=make_task("colorization", {"bins": 6, "hidden": 16}).opts)
    res = pretext_losses(spec, pool_images=pool, test_images=test, mean=(0.5,) * 3,
                         std=(0.25,) * 3, log=lambda s: None)
    assert res.pool_loss.shape == (pool.shape[0],) and res.test_loss.shape == (test.shape[0],)
    assert np.isfinite(res.pool_loss).all() and res.pool_loss.std() > 0


def test_colorization_refuses_grayscale_images(digits):
    with pytest.raises(PretextInputError, match="RGB"):
        pretext_losses(_spec("colorization"), pool_images=digits.x_train[:8], mean=digits.mean, std=digits.std,
                       log=lambda s: None)


def test_best_selection_keeps_the_best_scoring_epoch(digits):
    res = pretext_losses(_spec("rotation", epochs=2, selection="best"), pool_images=digits.x_train[:300],
                         mean=digits.mean, std=digits.std, log=lambda s: None)
    scores = [h["pool_score"] for h in res.history]
    assert res.selected_epoch == 1 + int(np.argmax(scores))


def test_same_spec_same_losses_on_cpu(digits):
    kw = dict(pool_images=digits.x_train[:200], test_images=digits.x_test[:50], mean=digits.mean, std=digits.std,
              log=lambda s: None)
    for task in ("rotation", "simsiam"):
        a = pretext_losses(_spec(task), **kw)
        b = pretext_losses(_spec(task), **kw)
        assert np.array_equal(a.pool_loss, b.pool_loss) and np.array_equal(a.test_loss, b.test_loss)
    c = pretext_losses(_spec("rotation", seed=1), **kw)
    assert not np.array_equal(a.pool_loss, c.pool_loss)


# ------------------------------------------------------------------------------------------------
# the cache


def test_second_call_reads_the_cache_without_training(digits, tmp_path, monkeypatch):
    kw = dict(pool_images=digits.x_train[:300], test_images=digits.x_test[:40], mean=digits.mean, std=digits.std,
              cache_dir=tmp_path / "pretext", log=lambda s: None)
    first = pretext_losses(_spec("rotation"), **kw)
    assert first.cache == "miss"

    def no_training(*a, **k):
        raise AssertionError("the pretext network was retrained")

    monkeypatch.setattr(losses_mod, "fit_pretext", no_training)
    second = pretext_losses(_spec("rotation"), **kw)
    assert second.cache == "hit" and second.key == first.key
    assert np.array_equal(second.pool_loss, first.pool_loss) and np.array_equal(second.test_loss, first.test_loss)
    assert second.train_seconds == pytest.approx(first.train_seconds)  # the original cost, not ~0
    with pytest.raises(AssertionError, match="retrained"):  # any changed hyperparameter misses
        pretext_losses(_spec("rotation", lr=0.05), **kw)


def test_cache_key_covers_everything_that_determines_the_losses():
    base = dict(pool_fingerprint="p", test_fingerprint="t", mean=(0.5,), std=(0.2,), device=torch.device("cpu"),
                amp=False)
    spec = _spec("rotation")
    keys = {cache_key(key_fields(spec, **base))}
    variants = [dict(epochs=2), dict(batch_size=128), dict(lr=0.05), dict(momentum=0.8), dict(weight_decay=0.0),
                dict(model="resnet18-cifar"), dict(model_params={"width": 16}), dict(selection="best"), dict(seed=1),
                dict(channels_last=False),
                dict(task="jigsaw", options=make_task("jigsaw").opts),
                dict(task="jigsaw", options=make_task("jigsaw", {"eval_permutations": 4}).opts)]
    for v in variants:
        keys.add(cache_key(key_fields(_spec(**{"task": "rotation", **v}), **base)))
    for v in [dict(pool_fingerprint="q"), dict(test_fingerprint=None), dict(mean=(0.4,)), dict(std=(0.3,)),
              dict(amp=True), dict(device=torch.device("cuda"))]:
        keys.add(cache_key(key_fields(spec, **{**base, **v})))
    assert len(keys) == 1 + len(variants) + 6
    fields = key_fields(spec, **base)
    assert fields["torch"] == torch.__version__ and fields["spec"]["seed"] == 0


def test_a_waiting_run_reads_the_entry_the_lock_holder_writes(digits, tmp_path, monkeypatch):
    kw = dict(pool_images=digits.x_train[:64], mean=digits.mean, std=digits.std, log=lambda s: None)
    key = pretext_losses(_spec("rotation"), **kw).key
    cache = PretextCache(tmp_path / "pretext")
    holding = threading.Event()

    def holder():
        with cache.lock(key, log=lambda s: None):
            holding.set()
            time.sleep(1.0)
            cache.store(key, np.arange(64, dtype=np.float32), None,
                        {"train_seconds": 9.0, "selected_epoch": 1, "history": []})

    t = threading.Thread(target=holder)
    t.start()
    holding.wait(5)
    monkeypatch.setattr(losses_mod, "fit_pretext", lambda *a, **k: pytest.fail("trained while another run held the lock"))
    res = pretext_losses(_spec("rotation"), cache_dir=tmp_path / "pretext", **kw)
    t.join()
    assert res.cache == "hit" and res.pool_loss.tolist() == list(range(64)) and res.train_seconds == 9.0
    assert res.wait_seconds > 0.2  # recorded, so wall-clock reports can charge the training instead
    assert not (tmp_path / "pretext" / f"{key}.lock").exists()


def test_a_lock_left_by_a_dead_process_is_broken(digits, tmp_path):
    import json
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    kw = dict(pool_images=digits.x_train[:64], mean=digits.mean, std=digits.std, log=lambda s: None)
    key = pretext_losses(_spec("rotation"), **kw).key
    root = tmp_path / "pretext"
    root.mkdir()
    (root / f"{key}.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "time": time.time()}))
    res = pretext_losses(_spec("rotation"), cache_dir=root, **kw)
    assert res.cache == "miss" and (root / f"{key}.npz").exists()


# ------------------------------------------------------------------------------------------------
# the tasks' pieces


def test_rotation_loss_is_the_mean_cross_entropy_over_four_rotations():
    torch.manual_seed(0)
    task = make_task("rotation")
    net = task.build("small-cnn", {"width": 4}, 1, (8, 8)).eval()
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    norm = Normalizer((0.5,), (0.25,), torch.device("cpu"))
    with torch.no_grad():
        got, _ = task.losses(net, x, norm=norm, generator=torch.Generator(), train=False)
        xf = norm(x)
        want = sum(F.cross_entropy(net(torch.rot90(xf, k, dims=(2, 3))).logits, torch.full((5,), k),
                                   reduction="none") for k in range(4)) / 4
    assert torch.allclose(got, want, atol=1e-6)


def test_rotation_training_forwards_mix_the_rotations():
    # each of the four training forwards must hold several rotations, or BatchNorm leaks the label
    task = make_task("rotation")
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return type("O", (), {"logits": torch.zeros(x.shape[0], 4)})()

    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    norm = Normalizer((0.0,), (1 / 255,), torch.device("cpu"))
    task.losses(Probe(), x, norm=norm, generator=torch.Generator().manual_seed(0), train=True)
    for batch in seen:
        kinds = {next(k for k in range(4) if torch.equal(img, torch.rot90(norm(x[:1])[0], k, dims=(1, 2))))
                 for img in batch}
        assert len(kinds) > 1
    # and over the four forwards every image is shown in each rotation once
    for i in range(16):
        ks = sorted(next(k for k in range(4) if torch.equal(b[i], torch.rot90(norm(x[:1])[0], k, dims=(1, 2))))
                    for b in seen)
        assert ks == [0, 1, 2, 3]


def test_jigsaw_shuffle_moves_tiles_by_the_permutation():
    task = make_task("jigsaw")
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    perms = [tuple(p) for p in task.perms.tolist()]
    assert perms == list(itertools.permutations(range(4)))
    same = task.shuffle(x, torch.tensor([0]))
    assert torch.equal(same, x)
    swapped = task.shuffle(x, torch.tensor([perms.index((1, 0, 3, 2))]))
    assert swapped[0, 0].tolist() == [[2, 3, 0, 1], [6, 7, 4, 5], [10, 11, 8, 9], [14, 15, 12, 13]]


def test_jigsaw_permutation_subset_is_fixed_and_starts_at_identity():
    a = jigsaw_permutations(9, 10)
    assert a.shape == (10, 9) and a[0].tolist() == list(range(9))
    assert len({tuple(r) for r in a.tolist()}) == 10
    assert np.array_equal(a, jigsaw_permutations(9, 10))
    # greedy max-Hamming: the second permutation moves every tile
    assert (a[1] != a[0]).all()


def test_lab_conversion_of_known_colours():
    rgb = torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 0, 0]]).view(3, 3, 1, 1)
    lab = rgb_to_lab(rgb).view(3, 3)
    assert torch.allclose(lab[0], torch.tensor([100.0, 0, 0]), atol=0.05)
    assert torch.allclose(lab[1], torch.tensor([0.0, 0, 0]), atol=0.05)
    assert torch.allclose(lab[2], torch.tensor([53.24, 80.09, 67.20]), atol=0.05)


def test_task_options_are_validated():
    from albench.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_task("jigsaw", {"permutations": 25})
    assert err.value.field == "params.pretext_options.permutations"
    with pytest.raises(ConfigError):
        make_task("simsiam", {"depth": 3})
    assert make_task("colorization", {"bins": 8}).opts == {"bins": 8, "hidden": 64}
