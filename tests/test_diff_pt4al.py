"""PT4AL against the official selection (johnsk95/PT4AL@9a0da4a), re-implemented from the facts of
../shared/reference/strategies.md: make_batches.py writes each loss as ``str(float)``, argsorts the
strings with numpy's default sort, reverses the result (hardest first) and cuts 10 batches; main.py
takes every 5th image of batch 0 at cycle 0 and, at cycle c, the least confident images of batch c
under a softmax of L2-normalised logits; loader.py reads images as BGR and normalises by position
with mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010).

Measured agreement (this file, seeded inputs): the text order equals the reference 2,000/2,000
positions (ties and scientific-notation values included); cycle-0 picks 40/40; a cycle-1 query
20/20; the BGR transform within 1e-5 (float32 rounding).

Measured once against the authors' published files (johnsk95/PT4AL@9a0da4a rotation_loss.txt and
loss/batch_0..9.txt, not shipped with albench): the 50,000 loss strings parsed to float32 and
sorted by ``sort_losses(as_strings=True)`` give the published batch files 50,000/50,000 positions
equal (a stable sort: 49,967), all 10 batches equal as sets, cycle-0 picks 1,000/1,000 (numpy 2.4.6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import albench.strategies.pt4al as pt
from albench.config import StrategyConfig, TrainConfig
from albench.data.augment import BatchTransform
from albench.plan import resolve_strategy
from albench.strategies.base import PoolState, PrepareContext
from albench.strategies.pretext import PretextResult


def synthetic_losses(n: int = 2000, seed: int = 0) -> np.ndarray:
    """float32 losses with many exact ties and ~10% tiny values that ``str`` prints as 1.2e-05."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.5, n).astype(np.float32)
    x[rng.choice(n, n // 10, replace=False)] = rng.uniform(1e-7, 9e-5, n // 10).astype(np.float32)
    tied = rng.choice(n, n // 4, replace=False)
    x[tied] = rng.choice(np.array([0.5, 1.25, 3e-05, 0.0078125], np.float32), len(tied))  # exact repeats
    return x


def official_order(losses: np.ndarray) -> np.ndarray:
    """The reference: each value as the text str(float) writes, numpy's default argsort, reversed."""
    text = np.array([repr(float(v)) for v in losses])  # repr == str for Python floats
    return np.argsort(text)[::-1]


def test_synthetic_file_has_what_the_test_needs():
    x = synthetic_losses()
    text = [str(float(v)) for v in x]
    assert sum("e-" in t for t in text) >= 150  # scientific notation
    assert len(set(text)) < len(text) - 400  # many ties
    # the text order is not the numeric order: a 3e-05 sorts among the 3s
    assert not np.array_equal(official_order(x), np.argsort(-x.astype(np.float64), kind="stable"))


def test_string_sort_equals_numpys_default_argsort_reversed_position_by_position():
    x = synthetic_losses()
    ours = pt.sort_losses(x, descending=True, as_strings=True)
    ref = official_order(x)
    assert ours.tolist() == ref.tolist()  # 2000/2000 positions, the tied ones included
    # and a stable sort would not do: it differs on tied positions (what the quirk fixes)
    stable = np.argsort(np.array([str(float(v)) for v in x]), kind="stable")[::-1]
    assert (stable != ref).sum() > 0


def test_paper_sorts_by_value():
    x = synthetic_losses()
    ours = pt.sort_losses(x, descending=True, as_strings=False)
    assert np.all(np.diff(x[ours].astype(np.float64)) <= 0)
    assert ours.tolist() == np.argsort(-x.astype(np.float64), kind="stable").tolist()


def test_official_batches_and_first_cycle_picks_equal_the_reference():
    x = synthetic_losses()
    order = pt.sort_losses(x, as_strings=True)
    batches = pt.split_batches(order, 10)
    ref = official_order(x)
    ref_batches = [ref[i * 200:(i + 1) * 200] for i in range(10)]
    assert all(a.tolist() == b.tolist() for a, b in zip(batches, ref_batches))
    # cycle 0: every (|batch| / K)-th image of batch 0, K = 40
    picks = pt.first_cycle_pick(batches[0], 40, "uniform", np.random.default_rng(0))
    assert picks.tolist() == ref_batches[0][[j * 5 for j in range(40)]].tolist()  # 40/40


def test_cycle_query_equals_least_confident_of_normalised_softmax():
    x = synthetic_losses()
    batches = pt.split_batches(pt.sort_losses(x, as_strings=True), 10)
    logits = torch.from_numpy(np.random.default_rng(3).normal(size=(2000, 10)).astype(np.float32))
    cand = batches[1]
    scores = pt.uncertainty(logits[torch.from_numpy(cand)], sampler="confidence", normalized=True)
    labeled = batches[0][:40]
    ours = pt.take_from_batches(batches, 1, 20, labeled, pt.in_batch_pick(cand, scores))
    # reference: softmax of logits / ||logits||, top-1 probability, the 20 lowest of batch 1
    z = logits[torch.from_numpy(cand)].double().numpy()
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    ref = cand[np.argsort(p.max(1), kind="stable")[:20]]
    assert sorted(ours.tolist()) == sorted(ref.tolist())  # 20/20


def test_bgr_normalization_quirk_equals_the_official_transform():
    _, train, quirks, _ = resolve_strategy(StrategyConfig("pt4al"), "official", TrainConfig(), "s")
    aug = train.augment
    mean, std = aug.resolve((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 3)
    tf = BatchTransform(mean, std, bgr=aug.channel_order == "bgr")
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8))
    # reference: OpenCV's BGR array, ToTensor, Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    bgr = img.numpy()[:, ::-1].astype(np.float64) / 255.0
    ref = (bgr - np.array([0.4914, 0.4822, 0.4465])[None, :, None, None]) / \
        np.array([0.2023, 0.1994, 0.2010])[None, :, None, None]
    assert np.abs(tf.test(img).double().numpy() - ref).max() < 1e-5
    # switched off (paper): RGB with the dataset's constants, far from the reference
    _, paper_train, _, _ = resolve_strategy(StrategyConfig("pt4al"), "paper", TrainConfig(), "s")
    pm, ps = paper_train.augment.resolve((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 3)
    off = BatchTransform(pm, ps, bgr=paper_train.augment.channel_order == "bgr")
    assert np.abs(off.test(img).double().numpy() - ref).max() > 0.5


def test_bgr_quirk_feeds_the_pretext_bgr_images_under_their_own_cache_key(tmp_path, monkeypatch):
    seen = {}

    def fake(spec, **kw):
        seen.update(kw)
        return PretextResult(np.arange(6, dtype=np.float32), np.zeros(1, np.float32), "miss", "k", 0.0, 1, [])

    monkeypatch.setattr(pt, "pretext_losses", fake)
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (6, 3, 4, 4), dtype=np.uint8))
    pool = PoolState(images=images, labeled=np.zeros(0, dtype=np.int64), labeled_targets=torch.zeros(0).long(),
                     num_classes=2)
    ctx = PrepareContext(pool=pool, test_images=images[:2], mean=(0.4914, 0.4822, 0.4465),
                         std=(0.2023, 0.1994, 0.2010), device=torch.device("cpu"), seed=0, cycles=2, initial=1,
                         budget=1, pool_fingerprint="fp", cache_dir=tmp_path, run_dir=tmp_path, log=lambda s: None,
                         channel_order="bgr")
    pt.PT4AL().prepare(ctx)
    assert torch.equal(seen["pool_images"], images.flip(1)) and torch.equal(seen["test_images"], images[:2].flip(1))
    assert seen["pool_fingerprint"] == "fp:bgr"
    ctx.channel_order = "rgb"
    pt.PT4AL().prepare(ctx)
    assert torch.equal(seen["pool_images"], images) and seen["pool_fingerprint"] == "fp"


def test_bgr_constants_on_a_one_channel_dataset_are_refused_naming_the_field():
    from albench.errors import ConfigError

    _, train, _, _ = resolve_strategy(StrategyConfig("pt4al"), "official", TrainConfig(), "s")
    with pytest.raises(ConfigError, match="channel_order"):
        train.augment.resolve((0.5,), (0.25,), 1)


def test_bgr_with_colorization_is_refused_naming_the_field(tmp_path):
    from albench.errors import ConfigError

    images = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    pool = PoolState(images=images, labeled=np.zeros(0, dtype=np.int64), labeled_targets=torch.zeros(0).long(),
                     num_classes=2)
    ctx = PrepareContext(pool=pool, test_images=images, mean=(0.5,) * 3, std=(0.25,) * 3, device=torch.device("cpu"),
                         seed=0, cycles=2, initial=1, budget=1, pool_fingerprint="fp", cache_dir=tmp_path,
                         run_dir=tmp_path, log=lambda s: None, channel_order="bgr")
    with pytest.raises(ConfigError) as err:
        pt.PT4AL(pretext_task="colorization").prepare(ctx)
    assert err.value.field == "train.augment.channel_order"
