"""albench's mini-batch k-means (TypiClust's clustering above 50 clusters): seeding, steps, labels, and
its quality against scikit-learn's MiniBatchKMeans on the same points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.strategies import kmeans as km


def _blobs(n_per: int, centres: np.ndarray, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    x = np.concatenate([c + r.normal(scale=scale, size=(n_per, centres.shape[1])) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(len(centres)), n_per)


def _inertia(x: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of each point to the mean of its cluster."""
    x = x.astype(np.float64)
    return float(sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels)))


def test_separated_blobs_are_recovered_exactly():
    centres = np.random.default_rng(0).normal(scale=50.0, size=(60, 8))
    x, truth = _blobs(40, centres, 1.0, 1)
    labels = km.minibatch_kmeans(x, 60, seed=0, batch_size=500)
    assert labels.dtype == np.int64 and labels.shape == (2400,)
    # one cluster per blob: the partitions are equal up to renaming
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 60 and len({t for t, _ in pairs}) == 60 and len({c for _, c in pairs}) == 60


def test_same_seed_same_labels_other_seed_other_draws():
    x = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    a = km.minibatch_kmeans(x, 70, seed=3)
    assert np.array_equal(a, km.minibatch_kmeans(x, 70, seed=3))
    assert not np.array_equal(a, km.minibatch_kmeans(x, 70, seed=4))
    assert a.min() >= 0 and a.max() < 70


def test_labels_are_the_nearest_final_centre():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    c = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    want = torch.cdist(x.double(), c.double()).argmin(1)
    assert torch.equal(km.nearest_centre(x, c, rows=64), want)


def test_kmeans_plus_plus_picks_distinct_points_and_copes_with_duplicates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    c = km.kmeans_plus_plus(x, 50, g)
    rows = {tuple(r) for r in c.tolist()}
    assert len(rows) == 50 and rows <= {tuple(r) for r in x.tolist()}
    # 5 distinct points, 10 copies each: after 5 centres every distance is 0; the rest are other rows
    dup = torch.randn(5, 3, generator=g).repeat_interleave(10, 0)
    c = km.kmeans_plus_plus(dup, 8, g)
    assert len({tuple(r) for r in c.tolist()}) == 5  # all five places found first, then copies
    with pytest.raises(ValueError, match="k=9, n=8"):
        km.kmeans_plus_plus(dup[:8], 9, g)


def test_steps_are_at_least_ten_and_at_least_one_epoch(monkeypatch):
    seen: list[int] = []
    real = torch.bincount

    def spy(lab, minlength=0, **kw):  # the steps count their batch's labels with one bincount each
        seen.append(int(lab.numel()))
        return real(lab, minlength=minlength, **kw)

    monkeypatch.setattr(km.torch, "bincount", spy)
    x = np.random.default_rng(0).normal(size=(8000, 4)).astype(np.float32)
    km.minibatch_kmeans(x, 60, seed=0)  # 8,000 points: epochs of 5,000 + 3,000, ten steps
    assert seen == [5000, 3000] * 5
    seen.clear()
    km.minibatch_kmeans(np.tile(x, (7, 1)), 60, seed=0)  # 56,000 points: one epoch, 12 steps
    assert seen == [5000] * 11 + [1000]


@pytest.mark.parametrize("seed", [0, 1])
def test_inertia_is_close_to_scikit_learns_minibatch_kmeans(seed):
    """On a 10-component mixture cut into 300 clusters, the within-cluster sum of squares is within 3%
    of scikit-learn's MiniBatchKMeans with the official settings (batch 5,000, 3 seedings); measured
    +1.0% and +0.5% for seeds 0 and 1."""
    from sklearn.cluster import MiniBatchKMeans

    r = np.random.default_rng(seed)
    x = np.maximum(r.normal(size=(10, 32))[r.integers(0, 10, 12000)] * 2 + r.normal(size=(12000, 32)), 0)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ours = _inertia(x, km.minibatch_kmeans(x, 300, seed=seed))
    theirs = _inertia(x, MiniBatchKMeans(300, batch_size=5000, n_init=3, random_state=seed).fit_predict(x))
    assert ours <= 1.03 * theirs, (ours, theirs)
