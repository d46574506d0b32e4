"""Learning Loss: the pair ranking loss by hand, feature detaching, the module on real stages,
selection of the highest predicted losses, params and quirks, and an end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from albench.config import StrategyConfig, TrainConfig, build_config
from albench.engine.loop import execute_run
from albench.errors import ConfigError
from albench.plan import make_plan, resolve_strategy
from albench.records import read_cycles
from albench.models.base import ModelOutput
from albench.models.registry import build_model
from albench.strategies.base import Inputs, ModelInfo, Outputs, PoolState
from albench.strategies.learning_loss import LossPredictionModule, detach_epoch, pair_ranking_loss
from albench.strategies.registry import get_strategy, make_strategy


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------- the pair loss by hand
def test_pair_loss_equals_hand_computation_on_four_items():
    pred = torch.tensor([0.5, 2.0, 1.0, -1.0], requires_grad=True)
    true = torch.tensor([3.0, 1.0, 2.0, 0.5])
    # pairs (0, 3) and (1, 2)
    # (0, 3): true 3.0 > 0.5 -> s = +1; pred diff 0.5 - (-1.0) = 1.5; max(0, 1 - 1.5) = 0
    # (1, 2): true 1.0 < 2.0 -> s = -1; pred diff 2.0 - 1.0 = 1.0;   max(0, 1 + 1.0) = 2
    loss = pair_ranking_loss(pred, true, margin=1.0)
    assert loss.item() == pytest.approx((0.0 + 2.0) / 2)
    loss.backward()
    # only pair (1, 2) is active: d/dpred_1 (1 + p1 - p2) / 2 = 0.5, d/dpred_2 = -0.5
    assert pred.grad.tolist() == pytest.approx([0.0, 0.5, -0.5, 0.0])


def test_pair_loss_tie_counts_as_minus_one_and_margin_is_used():
    pred = torch.tensor([0.2, 0.0, 0.5, 0.0])
    true = torch.tensor([1.0, 2.0, 2.0, 0.0])
    # (0, 3): s = +1, diff 0.2 -> max(0, 0.5 - 0.2) = 0.3
    # (1, 2): tie -> s = -1, diff -0.5 -> max(0, 0.5 - 0.5) = 0
    assert pair_ranking_loss(pred, true, margin=0.5).item() == pytest.approx(0.15)
    # margin 1: 0.8 and 0.5
    assert pair_ranking_loss(pred, true, margin=1.0).item() == pytest.approx(0.65)


def test_pair_loss_odd_batch_leaves_the_middle_item_out():
    pred = torch.tensor([0.5, 2.0, 7.0, 1.0, -1.0])
    true = torch.tensor([3.0, 1.0, 9.0, 2.0, 0.5])
    outer = pair_ranking_loss(pred[[0, 1, 3, 4]], true[[0, 1, 3, 4]])
    assert pair_ranking_loss(pred, true).item() == pytest.approx(outer.item())


def test_pair_loss_of_one_item_is_zero_and_backpropagates():
    pred = torch.tensor([1.5], requires_grad=True)
    loss = pair_ranking_loss(pred, torch.tensor([2.0]))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad.tolist() == [0.0]


def test_pair_loss_treats_true_losses_as_constants():
    pred = torch.tensor([0.0, 0.0, 0.0, 0.0], requires_grad=True)
    true = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    pair_ranking_loss(pred, true).backward()
    assert true.grad is None
    assert pred.grad is not None


def test_detach_epoch():
    assert detach_epoch(0.6, 200) == 120  # 120 epochs with gradient, as the paper says
    assert detach_epoch(0.6, 15) == 9
    assert detach_epoch(0.0, 200) == 0
    assert detach_epoch(1.0, 10) == 10  # never within training


# ---------------------------------------------------------------------- the module
def _fake_out(batch=4, channels=(2, 3, 4, 5), size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    stages = tuple(torch.randn(batch, c, size, size, generator=g, requires_grad=True) for c in channels)
    return ModelOutput(torch.zeros(batch, 10), torch.zeros(batch, channels[-1]), stages)


def test_module_shapes_and_score():
    torch.manual_seed(0)
    m = LossPredictionModule((2, 3, 4, 5), hidden=7)
    assert [fc.in_features for fc in m.stage_fc] == [2, 3, 4, 5]
    assert m.head.in_features == 4 * 7
    out = _fake_out(batch=6)
    assert m.score(out).shape == (6,)


@pytest.mark.parametrize("epoch, reaches_backbone", [(0, True), (8, True), (9, False), (14, False)])
def test_stage_features_are_detached_from_the_detach_epoch(epoch, reaches_backbone):
    torch.manual_seed(0)
    m = LossPredictionModule((2, 3, 4, 5), detach_at=0.6)  # 15 epochs -> detached from epoch 9
    out = _fake_out()
    per_item = torch.tensor([1.0, 2.0, 0.5, 3.0])
    m.training_loss(out, per_item, epoch=epoch, epochs=15).backward()
    grads = [s.grad for s in out.stages]
    if reaches_backbone:
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert all(g is None for g in grads)
    # the module itself always learns
    assert all(p.grad is not None for p in m.parameters())


def test_detached_variant_never_reaches_the_backbone():
    s = make_strategy("learning-loss-detached")
    m = s.auxiliary(ModelInfo(stage_channels=(2, 3, 4, 5), embedding_dim=5, num_classes=10, in_channels=1,
                              image_size=(8, 8)))
    out = _fake_out()
    m.training_loss(out, torch.tensor([1.0, 2.0, 0.5, 3.0]), epoch=0, epochs=200).backward()
    assert all(st.grad is None for st in out.stages)


def test_training_loss_is_weight_times_pair_loss():
    torch.manual_seed(0)
    m = LossPredictionModule((2, 3, 4, 5), weight=2.5, margin=1.0)
    out = _fake_out()
    per_item = torch.tensor([1.0, 2.0, 0.5, 3.0])
    expected = 2.5 * pair_ranking_loss(m.score(out), per_item)
    assert m.training_loss(out, per_item, epoch=0, epochs=10).item() == pytest.approx(expected.item())


def test_module_reads_small_cnn_stages_down_to_one_pixel():
    model = build_model("small-cnn", num_classes=10, in_channels=1, image_size=(8, 8), params={"width": 4})
    s = make_strategy("learning-loss")
    aux = s.auxiliary(ModelInfo(stage_channels=model.stage_channels, embedding_dim=model.embedding_dim,
                                num_classes=10, in_channels=1, image_size=(8, 8)))
    out = model(torch.randn(3, 1, 8, 8))
    assert [tuple(st.shape[2:]) for st in out.stages][-1] == (1, 1)
    assert aux.score(out).shape == (3,)


# ---------------------------------------------------------------------- selection
def _pool(n=20, labeled=(0, 1)):
    lab = np.array(labeled, dtype=np.int64)
    return PoolState(images=torch.zeros(n, 1, 8, 8, dtype=torch.uint8), labeled=lab,
                     labeled_targets=torch.zeros(len(lab), dtype=torch.long), num_classes=10)


def test_select_takes_the_highest_predicted_losses():
    s = make_strategy("learning-loss")
    idx = np.array([3, 5, 8, 11, 12], dtype=np.int64)
    aux = torch.tensor([0.1, 2.0, -1.0, 2.0, 0.7])  # tie between 5 and 11: lower position first
    inputs = Inputs(candidates=Outputs(indices=idx, aux=aux), labeled=None, device=torch.device("cpu"))
    got = s.select(cycle=1, budget=3, pool=_pool(), inputs=inputs, rng=np.random.default_rng(0))
    assert got.tolist() == [5, 11, 12]


def test_candidates_are_a_random_unlabeled_subset():
    s = make_strategy("learning-loss", {"subset": 5})
    pool = _pool(20, labeled=(0, 1, 2))
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert len(cand) == 5 and len(set(cand.tolist())) == 5
    assert not set(cand.tolist()) & {0, 1, 2}
    assert make_strategy("learning-loss", {"subset": None}).candidates(
        cycle=1, pool=pool, rng=np.random.default_rng(0)).tolist() == list(range(3, 20))
    assert len(make_strategy("learning-loss").candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))) == 17


# ---------------------------------------------------------------------- params and quirks
@pytest.mark.parametrize("params, field", [({"detach_at": 1.5}, "detach_at"), ({"margin": -1}, "margin"),
                                           ({"subset": 0}, "subset"), ({"hidden": 0}, "hidden")])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        get_strategy("learning-loss").validate_params(params, "params")
    assert field in str(err.value)


def test_detached_variant_has_no_detach_param():
    with pytest.raises(ConfigError):
        get_strategy("learning-loss-detached").validate_params({"detach_at": 0.6}, "params")


def test_official_protocol_warm_starts():
    st, train, quirks, flags = resolve_strategy(StrategyConfig("learning-loss"), "official", TrainConfig(), "s")
    assert quirks == ["warm-start", "official-std"] and train.init == "warm" and flags == []
    assert train.augment.std == [0.2023, 0.1994, 0.2010]
    _, train, _, _ = resolve_strategy(StrategyConfig("learning-loss"), "paper", TrainConfig(), "s")
    assert train.init == "fresh"


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_end_to_end_and_detached_module_leaves_backbone_training_unchanged(tiny_raw, tmp_path):
    """learning-loss runs a full loop; with the features detached from the start the backbone trains
    exactly as with no module at all, so cycle 0 (same initial labels) matches random bit for bit."""
    rows = {}
    for name in ("random", "learning-loss-detached", "learning-loss"):
        raw = dict(tiny_raw, output=str(tmp_path / name), strategies=[name])
        (rc,) = make_plan(build_config(raw))
        outcome = execute_run(rc)
        assert outcome.state == "complete", outcome.error
        queries = json.loads((rc.run_dir / "queries.json").read_text())
        assert [len(queries[str(c)]) for c in range(3)] == [20, 20, 20]
        assert len({i for q in queries.values() for i in q}) == 60
        rows[name] = read_cycles(rc.run_dir)
    assert rows["learning-loss-detached"][0]["test_loss"] == rows["random"][0]["test_loss"]
    # not detached, the module's gradient does reach the backbone and changes the cycle-0 model
    assert rows["learning-loss"][0]["test_loss"] != rows["random"][0]["test_loss"]



def test_global_average_is_the_pool_and_leaves_stage_gradients_channels_last():
    from albench.strategies.learning_loss import global_average

    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    pooled = torch.nn.functional.adaptive_avg_pool2d(s, 1).flatten(1)
    assert torch.allclose(global_average(s), pooled, atol=1e-12)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64)
    (grad_pool,) = torch.autograd.grad((pooled * w).sum(), s)
    (grad_ours,) = torch.autograd.grad((global_average(s) * w).sum(), s)
    assert torch.allclose(grad_ours, grad_pool, atol=1e-12)

    # small-cnn trained channels_last: with the module attached, the gradient reaching each stage
    # output keeps the layout it has without it (so backward makes no full-size layout copies)
    def stage_grad_layouts(with_module: bool) -> list[bool]:
        torch.manual_seed(0)
        model = build_model("small-cnn", num_classes=10, in_channels=3, image_size=(32, 32),
                            params={"width": 8}).to(memory_format=torch.channels_last)
        module = LossPredictionModule(model.stage_channels)
        x = torch.randn(6, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        out = model(x)
        layouts = []
        for st in out.stages:
            st.register_hook(lambda grad: layouts.append(grad.is_contiguous(memory_format=torch.channels_last)))
        loss = out.logits.sum() + (module(tuple(out.stages)).sum() if with_module else 0.0)
        loss.backward()
        return layouts

    plain = stage_grad_layouts(False)
    assert sum(plain) >= 3  # the three stages above 1x1 get channels_last gradients
    assert stage_grad_layouts(True) == plain
