"""PAL: the rotation batch layout, both scores by hand, sub-query sizes, the sub-query procedure
with hand-built networks (diversity changes a pick), eval-mode scoring, params and quirks. The contract
(determinism, global RNG, valid queries, resume, end to end) is checked by tests/test_contract_suite.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from albench.config import StrategyConfig, TrainConfig
from albench.errors import ConfigError
from albench.plan import resolve_strategy
from albench.strategies.base import Inputs, Outputs, PoolState
from albench.strategies.pal import PAL, kl_score, rotate4, rotation_score
from albench.strategies.registry import get_strategy, make_strategy

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- pieces by hand
def test_rotate4_layout():
    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).view(2, 1, 2, 2)
    xr, y = rotate4(x)
    assert xr.shape == (8, 1, 2, 2)
    assert y.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    for i in range(2):
        for k in range(4):
            assert torch.equal(xr[4 * i + k], torch.rot90(x[i], k, dims=(1, 2)))


def test_rotation_score_by_hand():
    p = torch.full((1, 4, 4), 0.1)
    p[0, 0, 0], p[0, 1, 1], p[0, 2, 2], p[0, 3, 3] = 0.7, 0.4, 0.25, 0.1
    assert rotation_score(p).item() == pytest.approx(-(0.7 + 0.4 + 0.25 + 0.1))


def test_kl_score_by_hand():
    # KL(u || p) = sum_c (1/C) log2((1/C) / p_c)
    assert kl_score(torch.tensor([[0.5, 0.5]])).item() == pytest.approx(0.0)
    expected = -(0.5 * math.log2(0.5 / 0.8) + 0.5 * math.log2(0.5 / 0.2))  # -0.3219 bits
    assert kl_score(torch.tensor([[0.8, 0.2]])).item() == pytest.approx(expected)
    assert math.isfinite(kl_score(torch.tensor([[1.0, 0.0]])).item())  # a zero probability stays finite


@pytest.mark.parametrize("budget, sub, sizes", [(5, 2, [2, 2, 1]), (4, 2, [2, 2]), (1, 512, [1]),
                                                (1000, 512, [512, 488])])
def test_sub_query_sizes(budget, sub, sizes):
    assert make_strategy("pal", {"sub_query": sub}).sub_query_sizes(budget) == sizes


# ---------------------------------------------------------------------- the procedure, hand-built networks
class _HandBuilt(PAL):
    """The trained network 'A' and its fine-tuned copy 'B' score from fixed tables, by pool index."""

    ROT_A = {10: 2.0, 11: 1.0, 12: 1.9, 13: 0.0, 14: -1.0, 15: -2.0}
    KL_A = {10: 3.0, 11: 3.0, 12: 2.0, 13: 1.0, 14: 1.0, 15: 1.0}
    ROT_B = {12: -3.0, 13: 0.0, 14: -0.5, 15: 0.0}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.finetuned_on: list[list[int]] = []

    def train_scorer(self, pool, device, rng):
        return "A"

    def finetune(self, net, images, device, rng):
        self.finetuned_on.append(sorted(int(v) for v in images[:, 0, 0, 0]))
        return "B"

    def score(self, net, images, indices, device, generator=None):
        if net == "A":
            return (torch.tensor([self.ROT_A[int(i)] for i in indices]),
                    torch.tensor([self.KL_A[int(i)] for i in indices]))
        return torch.tensor([self.ROT_B[int(i)] for i in indices]), torch.zeros(len(indices))


def test_sub_queries_follow_the_scores_and_diversity_changes_the_pick():
    images = torch.arange(16, dtype=torch.uint8).view(16, 1, 1, 1).repeat(1, 1, 4, 4)  # pixel = pool index
    pool = PoolState(images=images, labeled=np.arange(10), labeled_targets=torch.zeros(10, dtype=torch.long),
                     num_classes=2)
    inputs = Inputs(candidates=Outputs(indices=np.arange(10, 16)), labeled=None, device=CPU)
    s = _HandBuilt(sub_query=2)
    got = s.select(cycle=1, budget=3, pool=pool, inputs=inputs, rng=np.random.default_rng(0))
    # first sub-query by base = rot_A + kl_A: 10 -> 5.0, 11 -> 4.0, 12 -> 3.9, 13 -> 1.0, 14 -> 0, 15 -> -1
    # -> 10, 11; the copy is fine-tuned on them; then rot_B + base: 12 -> 0.9, 13 -> 1.0, 14 -> -0.5,
    # 15 -> -1 -> 13 (12 would be next without the diversity term)
    assert sorted(got.tolist()) == [10, 11, 13]
    assert s.finetuned_on == [[10, 11]]
    # weights: without the diversity term the third pick is 12
    s0 = _HandBuilt(sub_query=2, lambda_div=0.0)
    assert sorted(s0.select(cycle=1, budget=3, pool=pool, inputs=inputs,
                            rng=np.random.default_rng(0)).tolist()) == [10, 11, 12]
    # one sub-query: no fine-tune at all
    s1 = _HandBuilt(sub_query=512)
    assert sorted(s1.select(cycle=1, budget=3, pool=pool, inputs=inputs,
                            rng=np.random.default_rng(0)).tolist()) == [10, 11, 12]
    assert s1.finetuned_on == []


# ---------------------------------------------------------------------- real networks, tiny
SMALL = {"scorer_model": "small-cnn", "scorer_params": {"width": 4}, "epochs": 2, "batch_size": 8, "sub_query": 3,
         "finetune_epochs": 1, "crop_padding": 1, "hflip": False}


def _pool(n=40, n_labeled=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    return PoolState(images=images, labeled=np.arange(n_labeled),
                     labeled_targets=torch.randint(0, 3, (n_labeled,), generator=g), num_classes=3)


def test_scorer_scores_in_eval_mode_independent_of_batch_mates():
    pool = _pool()
    s = make_strategy("pal", {**SMALL, "score_batch_size": 64})
    net = s.train_scorer(pool, CPU, np.random.default_rng(0))
    together = s.score(net, pool.images, np.arange(10, 40), CPU)
    alone = [s.score(net, pool.images, np.array([i]), CPU) for i in range(10, 14)]
    assert torch.allclose(together[0][:4], torch.cat([a[0] for a in alone]), atol=1e-5)
    assert torch.allclose(together[1][:4], torch.cat([a[1] for a in alone]), atol=1e-5)


def test_needs_square_images_and_labels():
    pool = PoolState(images=torch.zeros(6, 1, 8, 6, dtype=torch.uint8), labeled=np.arange(2),
                     labeled_targets=torch.zeros(2, dtype=torch.long), num_classes=2)
    with pytest.raises(ValueError, match="square"):
        make_strategy("pal", SMALL).train_scorer(pool, CPU, np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        make_strategy("pal", SMALL).train_scorer(_pool(n_labeled=0), CPU, np.random.default_rng(0))


# ---------------------------------------------------------------------- params and quirks
@pytest.mark.parametrize("params, field", [({"scorer_model": "vgg99"}, "scorer_model"), ({"sub_query": 0}, "sub_query"),
                                           ({"epochs": 0}, "epochs"), ({"lambda_div": -1}, "lambda_div"),
                                           ({"momentum": 1.0}, "momentum"),
                                           ({"scorer_model": "small-cnn", "scorer_params": {"depth": 3}}, "depth")])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        get_strategy("pal").validate_params(params, "params")
    assert field in str(err.value)


def test_official_protocol_scores_through_the_training_transform():
    st, _, quirks, _ = resolve_strategy(StrategyConfig("pal"), "official", TrainConfig(), "s")
    assert quirks == ["augment-at-scoring"] and st.params["score_augment"] is True
    st, _, _, _ = resolve_strategy(StrategyConfig("pal"), "paper", TrainConfig(), "s")
    assert st.params["score_augment"] is False
