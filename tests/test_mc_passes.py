"""Cheap MC-dropout passes: a model that declares its stochastic split runs the deterministic prefix once
per batch and the suffix T times, with the same masks, hence the same posteriors, as T full passes;
a model without a split runs full passes; MC-averaged test evaluation (train.test_passes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from albench.data.augment import BatchTransform
from albench.engine.inference import (compute_outputs, evaluate, has_stochastic_split, seeded_dropout,
                                      stochastic_posteriors)
from albench.models.base import ModelOutput
from albench.models.registry import build_model
from albench.strategies.base import StochasticPasses
from albench.tasks import make_task

CPU = torch.device("cpu")


def _model(name: str, **params):
    torch.manual_seed(0)
    size = (28, 28) if name == "dbal-cnn" else (8, 8)
    return build_model(name, num_classes=10, in_channels=1, image_size=size, params=params).eval()


def _posteriors(model, x, passes, seed, split, batchnorm="eval"):
    with seeded_dropout(model, seed, CPU, batchnorm) as masks:
        probs, plain = stochastic_posteriors(model, x, masks, passes, device=CPU, split=split, with_plain=True)
    return probs, plain


@pytest.mark.parametrize("name, params, size", [("dbal-cnn", {}, 28), ("small-cnn", {"width": 4, "dropout": 0.5}, 8)])
def test_cheap_and_full_passes_give_the_same_posteriors(name, params, size):
    m = _model(name, **params)
    assert has_stochastic_split(m)
    x = torch.rand(6, 1, size, size, generator=torch.Generator().manual_seed(1))
    cheap, plain_cheap = _posteriors(m, x, 7, seed=3, split=True)
    full, plain_full = _posteriors(m, x, 7, seed=3, split=False)
    assert cheap.shape == (6, 7, 10)
    assert torch.equal(cheap, full)  # same masks in the same order: the same numbers, bit for bit
    assert torch.equal(plain_cheap, plain_full) and torch.equal(plain_full, m(x).logits)  # masks off: model(x)
    assert (cheap.std(dim=1) > 0).any()  # and the passes do differ
    other, _ = _posteriors(m, x, 7, seed=4, split=True)
    assert not torch.equal(cheap, other)


def test_batchnorm_train_mode_is_the_same_with_a_split():
    m = _model("small-cnn", width=4, dropout=0.5)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    cheap, _ = _posteriors(m, x, 4, seed=1, split=True, batchnorm="train")
    full, _ = _posteriors(m, x, 4, seed=1, split=False, batchnorm="train")
    assert torch.equal(cheap, full)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # running statistics restored
    assert not m.training


def test_the_prefix_runs_once_per_batch_and_the_suffix_once_per_pass():
    m = _model("dbal-cnn")
    calls = {"conv": 0, "dense": 0}
    m.conv1.register_forward_hook(lambda *a: calls.__setitem__("conv", calls["conv"] + 1))
    m.dense1.register_forward_hook(lambda *a: calls.__setitem__("dense", calls["dense"] + 1))
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    out = compute_outputs(model=m, aux=None, task=None, needs=frozenset({StochasticPasses(passes=5, seed=0)}),
                          images=images, indices=np.arange(10), transform=BatchTransform((0.0,), (1.0,)),
                          batch_size=4, device=CPU)
    assert out.stochastic.shape == (10, 5, 10)
    assert calls == {"conv": 3, "dense": 15}  # 3 batches: the convolutions 3 times, the dense layer 3 x 5


class _NoSplit(nn.Module):
    """A network declaring no split: every pass runs it whole."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = torch.relu(self.fc1(x.float().flatten(1)))
        return ModelOutput(self.fc2(self.dropout(h)), h, ())


def test_a_model_without_a_split_runs_full_passes():
    torch.manual_seed(0)
    m = _NoSplit().eval()
    assert not has_stochastic_split(m)
    images = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)
    out = compute_outputs(model=m, aux=None, task=None, needs=frozenset({StochasticPasses(passes=4, seed=0)}),
                          images=images, indices=np.arange(6), transform=BatchTransform((0.5,), (0.25,)),
                          batch_size=6, device=CPU)
    assert m.calls == 4 and out.stochastic.shape == (6, 4, 3) and (out.stochastic.std(dim=1) > 0).any()


class _BadSplit(_NoSplit):
    """Declares a prefix that runs the dropout layer: refused."""

    def forward_prefix(self, x):
        return self.dropout(torch.relu(self.fc1(x.float().flatten(1))))

    def forward_suffix(self, h):
        return ModelOutput(self.fc2(h), h, ())


def test_a_prefix_that_runs_dropout_is_refused():
    m = _BadSplit().eval()
    with pytest.raises(ValueError, match="forward_prefix ran a dropout layer"):
        _posteriors(m, torch.rand(2, 1, 2, 2), 3, seed=0, split=None)


def _digits_like(n=40, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_mc_evaluation_averages_the_passes_and_records_the_single_pass_metric():
    m = _model("dbal-cnn")
    x, y = _digits_like()
    tf = BatchTransform((0.0,), (1.0,))
    task = make_task("classification", 10)
    plain_metrics, plain_loss, _ = evaluate(model=m, task=task, x=x, y=y, transform=tf, batch_size=16, device=CPU)
    metrics, loss, per_item = evaluate(model=m, task=task, x=x, y=y, transform=tf, batch_size=16, device=CPU,
                                       per_item=True, passes=6, seed=11)
    assert metrics["accuracy_single_pass"] == plain_metrics["accuracy"]
    # by hand: the same masks (one generator over the batches in order), mean posterior, argmax, -log p_y
    probs = []
    with torch.inference_mode(), seeded_dropout(m, 11, CPU) as masks:
        for start in range(0, len(x), 16):
            xb = tf.test(x[start:start + 16])
            probs.append(stochastic_posteriors(m, xb, masks, 6, device=CPU, split=False)[0])
    mean = torch.cat(probs).mean(dim=1)
    assert metrics["accuracy"] == pytest.approx(float((mean.argmax(1) == y).float().mean()))
    assert per_item == pytest.approx((-torch.log(mean[torch.arange(len(y)), y])).numpy(), rel=1e-5)
    assert loss == pytest.approx(float(per_item.mean()))
    again, _, _ = evaluate(model=m, task=task, x=x, y=y, transform=tf, batch_size=16, device=CPU, passes=6, seed=11)
    assert again == metrics
    with pytest.raises(ValueError, match="seed"):
        evaluate(model=m, task=task, x=x, y=y, transform=tf, batch_size=16, device=CPU, passes=6)


@pytest.mark.parametrize("q", [0.75, 0.5, 0.7])  # 16-bit draws (exact for these q), 32-bit draws for 0.7
def test_masks_keep_with_probability_one_minus_p(q):
    from albench.engine.inference import _Masks

    masks = _Masks([], seed=0, device=CPU)
    keep = masks.keep((1000, 1000), q, CPU)
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    assert abs(keep.float().mean().item() - q) < 0.002  # 1e6 draws: std 0.0005
    again = _Masks([], seed=0, device=CPU).keep((1000, 1000), q, CPU)
    assert torch.equal(keep, again)  # seeded
    assert not torch.equal(keep, masks.keep((1000, 1000), q, CPU))  # the generator moves on
    state = np.random.get_state()[1].copy()
    _Masks([], seed=1, device=CPU).keep((10,), q, CPU)
    assert np.array_equal(state, np.random.get_state()[1])  # numpy's global RNG untouched


@pytest.mark.parametrize("name, params, size", [("dbal-cnn", {}, 28), ("small-cnn", {"width": 4, "dropout": 0.5}, 8)])
def test_consistent_masks_are_the_same_for_cheap_and_full_passes_and_across_batches(name, params, size):
    """BatchBALD's consistent passes on a model with a stochastic split: the suffix reuses pass t's
    mask for every item, so cheap and full passes agree bit for bit, two copies of one image in
    different evaluation batches get the same posteriors in every pass, and the passes differ."""
    m = _model(name, **params)
    x = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(2))

    def consistent(split: bool, batches: list[torch.Tensor]) -> torch.Tensor:
        with seeded_dropout(m, 5, CPU, consistent=True) as masks:
            return torch.cat([stochastic_posteriors(m, xb, masks, 6, device=CPU, split=split)[0] for xb in batches])

    cheap = consistent(True, [x, x[:1]])
    assert torch.equal(cheap, consistent(False, [x, x[:1]]))
    # the same image in a batch of another size (convolutions may round differently): pass t's one mask
    assert torch.allclose(cheap[0], cheap[3], rtol=0, atol=1e-6)
    assert (cheap[0].std(dim=0) > 0).any()  # and the passes differ
    per_item = torch.cat([_posteriors(m, xb, 6, seed=5, split=True)[0] for xb in (x, x[:1])])
    assert not torch.allclose(per_item[0], per_item[3], rtol=0, atol=1e-5)  # BALD's: a fresh mask per item
