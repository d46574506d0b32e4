"""VAAL: the network sized from the image, selection of the lowest discriminator scores (with hand-
built networks), eval-mode scoring, seed dependence, learning on a separable pool, params and quirks.
The contract (same rng same query, global RNG, valid queries, resume, end to end) is checked by
tests/test_contract_suite.py."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from albench.config import StrategyConfig, TrainConfig
from albench.errors import ConfigError
from albench.plan import resolve_strategy
from albench.strategies.base import Inputs, Outputs, PoolState
from albench.strategies.registry import get_strategy, make_strategy
from albench.strategies.vaal import VAAL, VAE, Discriminator, pool_stats, vae_loss, vae_plan

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- the networks
@pytest.mark.parametrize("size, plan", [((32, 32), (4, 3, (4, 4))), ((8, 8), (2, 1, (4, 4))),
                                        ((28, 28), (3, 2, (7, 7))), ((4, 4), (2, 1, (2, 2))),
                                        ((32, 48), (4, 3, (4, 6)))])
def test_vae_plan(size, plan):
    assert vae_plan(size) == plan


def test_vae_plan_rejects_images_below_4_pixels():
    with pytest.raises(ValueError, match="4x4"):
        vae_plan((3, 8))


def test_vae_for_32x32_is_the_official_network():
    vae = VAE(3, (32, 32))  # width 128
    convs = [m for m in vae.encoder if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 128, (4, 4), (2, 2)), (128, 256, (4, 4), (2, 2)), (256, 512, (4, 4), (2, 2)), (512, 1024, (4, 4), (2, 2))]
    assert vae.fc_mu.in_features == 1024 * 2 * 2 and vae.fc_mu.out_features == 32
    assert vae.decoder_in.out_features == 1024 * 4 * 4
    tconvs = [m for m in vae.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(t.in_channels, t.out_channels, t.kernel_size) for t in tconvs] == [
        (1024, 512, (4, 4)), (512, 256, (4, 4)), (256, 128, (4, 4)), (128, 3, (1, 1))]
    d = Discriminator(32)
    assert [(m.in_features, m.out_features) for m in d.net if isinstance(m, nn.Linear)] == [(32, 512), (512, 512),
                                                                                            (512, 1)]


@pytest.mark.parametrize("channels, size", [(1, (8, 8)), (3, (32, 32)), (1, (28, 28)), (2, (5, 7))])
def test_vae_reconstructs_the_input_shape(channels, size):
    vae = VAE(channels, size, width=4, latent_dim=6)
    recon, mu, logvar = vae(torch.randn(3, channels, *size), torch.Generator().manual_seed(0))
    assert recon.shape == (3, channels, *size) and mu.shape == (3, 6) and logvar.shape == (3, 6)


def test_vae_loss_by_hand():
    x = torch.tensor([[[[1.0, 2.0]]]])  # (1, 1, 1, 2)
    recon = torch.tensor([[[[0.0, 2.0]]]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.zeros(2, 2)
    # MSE mean = 0.5; KL = -0.5 * sum(1 + 0 - mu^2 - 1) = 0.5 * (1 + 4) = 2.5 (summed over the batch)
    assert vae_loss(x, recon, mu, logvar, beta=1.0).item() == pytest.approx(0.5 + 2.5)
    assert vae_loss(x, recon, mu, logvar, beta=2.0).item() == pytest.approx(0.5 + 5.0)


def test_pool_stats_match_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 2, 4, 4), generator=g, dtype=torch.uint8)
    mean, std = pool_stats(x, chunk=7)
    xf = x.double() / 255
    assert mean == pytest.approx(xf.mean(dim=(0, 2, 3)).tolist())
    assert std == pytest.approx(xf.std(dim=(0, 2, 3), unbiased=False).tolist(), rel=1e-6)


# ---------------------------------------------------------------------- selection with hand-built networks
class _MeanEncoder(nn.Module):
    """mu = each image's mean (normalised) intensity in every latent dim."""

    def encode(self, x):
        mu = x.mean(dim=(1, 2, 3))[:, None].repeat(1, 2)
        return mu, torch.zeros_like(mu)


class _FirstDim(nn.Module):
    def forward(self, z):
        return z[:, 0]  # logit of D = mu_0: darker image -> lower D


class _HandBuilt(VAAL):
    def train_networks(self, pool, device, rng, unlabeled=None):
        return _MeanEncoder(), _FirstDim()


def _pool(intensities, labeled):
    images = torch.tensor(intensities, dtype=torch.uint8).view(-1, 1, 1, 1).repeat(1, 1, 4, 4)
    lab = np.asarray(labeled, dtype=np.int64)
    return PoolState(images=images, labeled=lab, labeled_targets=torch.zeros(len(lab), dtype=torch.long),
                     num_classes=2)


def test_selects_the_items_the_discriminator_scores_lowest():
    pool = _pool([50, 10, 200, 30, 120, 0, 90, 5], labeled=[0, 7])
    s = _HandBuilt()
    inputs = Inputs(candidates=Outputs(indices=pool.unlabeled), labeled=None, device=CPU)
    got = s.select(cycle=1, budget=3, pool=pool, inputs=inputs, rng=np.random.default_rng(0))
    # unlabeled intensities: 1->10, 2->200, 3->30, 4->120, 5->0, 6->90; the three darkest: 5, 1, 3
    assert got.tolist() == [5, 1, 3]
    # ... and only among the candidates it is given
    inputs = Inputs(candidates=Outputs(indices=np.array([2, 4, 6])), labeled=None, device=CPU)
    assert s.select(cycle=1, budget=2, pool=pool, inputs=inputs, rng=np.random.default_rng(0)).tolist() == [6, 4]


# ---------------------------------------------------------------------- training, eval mode, determinism
def _digits_like_pool(n=60, n_labeled=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    lab = np.arange(n_labeled, dtype=np.int64)
    return PoolState(images=images, labeled=lab, labeled_targets=torch.zeros(n_labeled, dtype=torch.long),
                     num_classes=2)


SMALL = {"iterations": 3, "batch_size": 8, "width": 4, "latent_dim": 4}


def test_scoring_in_eval_mode_does_not_depend_on_batch_mates():
    pool = _digits_like_pool()
    s = make_strategy("vaal", SMALL)
    vae, disc = s.train_networks(pool, CPU, np.random.default_rng(0))
    together = s.score(vae, disc, pool.images, np.arange(12, 60), CPU)
    alone = torch.cat([s.score(vae, disc, pool.images, np.array([i]), CPU) for i in range(12, 20)])
    assert torch.allclose(together[:8], alone, atol=1e-5)
    # the official defect: train-mode BN makes a score depend on the batch
    q = make_strategy("vaal", {**SMALL, "score_train_mode": True, "batch_size": 48})
    together = q.score(vae, disc, pool.images, np.arange(12, 60), CPU)
    alone = torch.cat([q.score(vae, disc, pool.images, np.array([i, i + 1]), CPU) for i in range(12, 20, 2)])
    assert not torch.allclose(together[:8], alone, atol=1e-3)


def test_another_rng_gives_another_query():
    """The networks' initialisation and batches come from ``rng`` (same rng, same query, and the global
    RNG left alone: the contract suite, tests/test_contract_suite.py)."""
    pool = _digits_like_pool()
    inputs = Inputs(candidates=Outputs(indices=pool.unlabeled), labeled=None, device=CPU)
    a = make_strategy("vaal", SMALL).select(cycle=1, budget=5, pool=pool, inputs=inputs, rng=np.random.default_rng(7))
    c = make_strategy("vaal", SMALL).select(cycle=1, budget=5, pool=pool, inputs=inputs, rng=np.random.default_rng(8))
    assert a.tolist() != c.tolist()


def test_learns_to_query_what_the_labeled_set_lacks():
    """Labeled: dark images only. Unlabeled: as many dark ones plus bright ones. Only the bright
    ones can be told apart, so they score lowest and are queried. ``beta = 0`` keeps the image's
    information in mu (the official summed KL pulls mu towards the prior within a few dozen
    steps, which this tiny budget could not outlast); 8 of 8 seeds give >= 9 of 10 here, a
    random query ~5."""
    g = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 40, (40, 1, 8, 8), generator=g, dtype=torch.uint8)
    bright = torch.randint(200, 256, (20, 1, 8, 8), generator=g, dtype=torch.uint8)
    images = torch.cat([dark, bright])  # 0..19 labeled dark, 20..39 unlabeled dark, 40..59 unlabeled bright
    lab = np.arange(20, dtype=np.int64)
    pool = PoolState(images=images, labeled=lab, labeled_targets=torch.zeros(20, dtype=torch.long), num_classes=2)
    s = make_strategy("vaal", {"iterations": 15, "batch_size": 20, "width": 4, "beta": 0.0})
    inputs = Inputs(candidates=Outputs(indices=pool.unlabeled), labeled=None, device=CPU)
    got = s.select(cycle=1, budget=10, pool=pool, inputs=inputs, rng=np.random.default_rng(0))
    assert (got >= 40).sum() >= 9, got


def test_iterations_follow_the_official_count_by_default():
    assert make_strategy("vaal").num_iterations(50000) == 50000 * 100 // 128  # 39,062 on CIFAR-10
    assert make_strategy("vaal", {"epochs": 2, "batch_size": 64}).num_iterations(1500) == 46
    assert make_strategy("vaal", {"iterations": 7}).num_iterations(1500) == 7


def test_subset_trains_on_labeled_plus_subset_and_scores_only_the_subset(monkeypatch):
    """The Sequential-GCN variant: 20 of the 48 unlabeled images are drawn; the VAE trains on the 12
    labeled and those 20 for epochs x 32 // batch iterations, and the query comes from the 20."""
    import albench.strategies.vaal as vaal_module
    seen, counted = [], []
    real_batches, real_count = vaal_module._batches, VAAL.num_iterations

    def spy_batches(indices, size, gen, **kw):
        seen.append(np.sort(indices).tolist())
        return real_batches(indices, size, gen, **kw)

    def spy_count(self, n_images):
        counted.append(n_images)
        return real_count(self, n_images)

    monkeypatch.setattr(vaal_module, "_batches", spy_batches)
    monkeypatch.setattr(VAAL, "num_iterations", spy_count)
    pool = _digits_like_pool()
    s = make_strategy("vaal", {**SMALL, "iterations": None, "epochs": 0.5, "subset": 20})
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3))
    assert len(cand) == 20 and set(cand.tolist()) <= set(range(12, 60)) and cand.tolist() == sorted(cand.tolist())
    assert cand.tolist() == s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3)).tolist()
    inputs = Inputs(candidates=Outputs(indices=cand), labeled=None, device=CPU)
    got = s.select(cycle=1, budget=5, pool=pool, inputs=inputs, rng=np.random.default_rng(0))
    assert set(got.tolist()) <= set(cand.tolist()) and len(set(got.tolist())) == 5
    assert seen == [list(range(12)), cand.tolist()]
    assert counted == [32] and real_count(s, 32) == 2  # 0.5 x (12 + 20) // 8
    # without a subset every unlabeled image is a candidate and is trained on
    seen.clear(), counted.clear()
    full = make_strategy("vaal", {**SMALL, "iterations": None, "epochs": 0.5})
    assert full.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3)).tolist() == list(range(12, 60))
    full.train_networks(pool, CPU, np.random.default_rng(0))
    assert seen[1] == list(range(12, 60)) and counted == [60]


def test_needs_a_labeled_and_an_unlabeled_image():
    pool = _digits_like_pool(n=10, n_labeled=0)
    with pytest.raises(ValueError, match="labeled"):
        make_strategy("vaal", SMALL).train_networks(pool, CPU, np.random.default_rng(0))


# ---------------------------------------------------------------------- params and quirks
@pytest.mark.parametrize("params, field", [({"iterations": 0}, "iterations"), ({"batch_size": 0}, "batch_size"),
                                           ({"epochs": 0}, "epochs"), ({"beta": -1}, "beta"), ({"subset": 0}, "subset"),
                                           ({"lr": 0}, "lr"), ({"latent": 3}, "latent")])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        get_strategy("vaal").validate_params(params, "params")
    assert field in str(err.value)


def test_official_protocol_switches_on_every_quirk():
    st, _, quirks, flags = resolve_strategy(StrategyConfig("vaal"), "official", TrainConfig(), "s")
    assert quirks == ["bn-batch-stats", "flip-at-scoring", "flip-training", "symmetric-pixels",
                      "unlabeled-short-batch", "official-normalization"]
    assert st.params["score_train_mode"] and st.params["score_flip"] and st.params["train_flip"]
    assert not st.params["unlabeled_drop_last"]
    assert st.params["input_norm"] == "symmetric" and flags == []
    st, _, quirks, _ = resolve_strategy(StrategyConfig("vaal"), "paper", TrainConfig(), "s")
    assert quirks == [] and not st.params["score_train_mode"] and not st.params["score_flip"]
    assert st.params["unlabeled_drop_last"]
