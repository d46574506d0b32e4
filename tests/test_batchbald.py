"""BatchBALD: its pieces by hand, the greedy picks on hand-made duplicates, K = 1 against BALD, the
exact/sampled switch, chunking, the generator, the consistent MC-dropout passes and the config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from albench.errors import ConfigError
from albench.strategies.bald import Bald, mutual_information
from albench.strategies.base import Inputs, Outputs, PoolState, StochasticPasses
from albench.strategies.batchbald import (BatchBald, batchbald_select, conditional_entropy, exact_joint,
                                          joint_entropies, sampled_joint)
from albench.strategies.registry import get_strategy, make_strategy

LN2 = math.log(2)

# T = 4 passes, C = 2 classes. A and A2 disagree the same way over the passes (A2 is A's duplicate),
# B disagrees independently of A, D is uncertain in every pass alike (no disagreement).
A = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
B = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
D = [[0.5, 0.5]] * 4
DUPLICATES = torch.tensor([A, A, B, D])


def _pool(n: int, classes: int) -> PoolState:
    return PoolState(images=torch.zeros(n, 1, 1, 1, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.long), num_classes=classes)


def _select(strategy, probs: torch.Tensor, budget: int, *, indices=None, seed: int = 0) -> list[int]:
    n = probs.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices)
    stochastic = probs if isinstance(strategy, BatchBald) else mutual_information(probs)
    inputs = Inputs(candidates=Outputs(indices=idx, stochastic=stochastic), labeled=None, device=torch.device("cpu"))
    return strategy.select(cycle=1, budget=budget, pool=_pool(int(idx.max()) + 1, probs.shape[2]), inputs=inputs,
                           rng=np.random.default_rng(seed)).tolist()


def _noisy(seed: int, n: int = 200, t: int = 20, c: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, 1, c, generator=g) * 2 + torch.randn(n, t, c, generator=g), dim=-1)


# ------------------------------------------------------------------------- the pieces, by hand
def test_conditional_entropy_by_hand():
    # the mean over passes of each pass's entropy: A and B are one-hot in every pass (0 log 0 = 0),
    # D is (.5, .5) in every pass (ln 2); a point with passes (.5, .5) and (1, 0) has (ln 2 + 0) / 2
    got = conditional_entropy(DUPLICATES)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx([0.0, 0.0, 0.0, LN2], abs=1e-15)
    assert conditional_entropy(torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])).item() == pytest.approx(LN2 / 2)


def test_exact_joint_by_hand():
    # two points, T = 2, C = 2; rows are the configurations (y1, y2) = 00, 01, 10, 11 (the last point fastest)
    p1 = [[0.9, 0.1], [0.2, 0.8]]
    p2 = [[0.5, 0.5], [1.0, 0.0]]
    joint = exact_joint(torch.tensor([p1, p2]))
    assert joint.dtype == torch.float64 and joint.shape == (4, 2)
    want = torch.tensor([[0.45, 0.2], [0.45, 0.0], [0.05, 0.8], [0.05, 0.0]], dtype=torch.float64)
    assert torch.allclose(joint, want, rtol=0, atol=1e-7)  # float32 inputs
    assert exact_joint(torch.zeros(0, 3, 2)).tolist() == [[1.0, 1.0, 1.0]]  # no point chosen: one empty configuration


def test_joint_entropies_by_hand():
    # with A chosen: (A, A2) takes 2 configurations with probability 1/2 each -> ln 2; (A, B) 4 configurations
    # of 1/4 -> ln 4; (A, D): A's 2 halves times D's (.5, .5) -> ln 4; (A, A) itself -> ln 2
    joint = exact_joint(DUPLICATES[:1])
    got = joint_entropies(joint, DUPLICATES)
    assert got.tolist() == pytest.approx([LN2, LN2, 2 * LN2, 2 * LN2], abs=1e-12)
    # nothing chosen: the entropy of the mean over passes, BALD's first term
    empty = joint_entropies(exact_joint(DUPLICATES[:0]), DUPLICATES)
    assert empty.tolist() == pytest.approx([LN2, LN2, LN2, LN2], abs=1e-12)


def test_sampled_joint_of_one_hot_passes_by_hand():
    # A's labels are certain in each pass (0, 0, 1, 1): the S draws of passes 0 and 1 all give label 0, those of
    # passes 2 and 3 label 1, so two distinct configurations, 2 S draws each, with J[u, t] = p_t(label u)
    s = 3
    sample = sampled_joint(DUPLICATES[:1], 4 * s, torch.Generator().manual_seed(0))
    want = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(sample.joint, want)
    assert sample.counts.tolist() == [2 * s, 2 * s]
    assert sample.log_scale.tolist() == [0.0, 0.0]  # each row's largest entry is 1
    # importance weights count / (D q(u)) with q = 1/2: the estimate of H[A, B] is exact here
    est = joint_entropies(exact_joint(DUPLICATES[:0]), DUPLICATES, sample=sample)
    assert est.tolist() == pytest.approx([LN2, LN2, 2 * LN2, 2 * LN2], abs=1e-12)


def _plain_estimate(chosen: torch.Tensor, samples: int, seed: int, probs: torch.Tensor) -> torch.Tensor:
    """The authors' estimator term by term: one row per draw (no merging), the plain product, 1 / (D q)."""
    n, t, c = chosen.shape
    p = chosen.double()
    g = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(p.reshape(n * t, c), samples // t, replacement=True, generator=g).reshape(n, -1)
    joint = torch.ones(labels.shape[1], t, dtype=torch.float64)
    for j in range(n):
        joint *= p[j][:, labels[j]].t()
    q = joint.mean(dim=1)
    jp = torch.einsum("mt,ntc->nmc", joint, probs.double()) / t
    return (-torch.special.xlogy(jp, jp) / (q[None, :, None] * joint.shape[0])).sum(dim=(1, 2))


def test_merged_scaled_draws_give_the_plain_estimate():
    probs = _noisy(6, n=40, t=10, c=4)
    for n in (1, 3, 8):  # few distinct configurations (much merged) to many
        sample = sampled_joint(probs[:n], 500, torch.Generator().manual_seed(n))
        assert sample.counts.sum() == 500 and (sample.joint.max(dim=1).values == 1).all()
        got = joint_entropies(exact_joint(probs[:0]), probs[n:], sample=sample)
        assert torch.allclose(got, _plain_estimate(probs[:n], 500, n, probs[n:]), rtol=1e-12)
    assert len(sampled_joint(probs[:1], 500, torch.Generator()).counts) <= 4  # 1 point: at most C rows


def test_sampled_estimate_approaches_the_exact_joint_entropy():
    probs = _noisy(3, n=12, t=16, c=3)
    chosen, rest = probs[:4], probs[4:]
    exact = joint_entropies(exact_joint(chosen), rest)
    est = joint_entropies(exact_joint(chosen), rest, sample=sampled_joint(chosen, 64_000, torch.Generator().manual_seed(5)))
    assert torch.allclose(est, exact, rtol=0.01)  # 64,000 draws: an error well under 1% of ~4.5 nats
    rough = joint_entropies(exact_joint(chosen), rest, sample=sampled_joint(chosen, 32, torch.Generator().manual_seed(5)))
    assert not torch.allclose(rough, exact, rtol=1e-6)  # 32 draws: a real estimate, not the exact sum


def test_chunks_change_no_number_and_zero_probabilities_add_zero():
    probs = _noisy(4, n=50, t=8, c=4)
    probs[7] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # exact zeros in every pass
    joint = exact_joint(probs[:2])
    whole = joint_entropies(joint, probs, chunk_bytes=1 << 30)
    tiny = joint_entropies(joint, probs, chunk_bytes=1)  # one candidate per chunk
    assert torch.isfinite(whole).all()
    assert torch.allclose(whole, tiny, rtol=0, atol=1e-12)
    sample = sampled_joint(probs[:2], 80, torch.Generator().manual_seed(0))
    assert torch.allclose(joint_entropies(joint, probs, sample=sample, chunk_bytes=1 << 30),
                          joint_entropies(joint, probs, sample=sample, chunk_bytes=1), rtol=0, atol=1e-12)


def test_the_sampled_estimate_survives_products_that_underflow_float64():
    # 400 chosen points: a configuration's probability is a product of 400 factors (about e^-900 here),
    # below float64's smallest number: the plain product is 0 and the authors' estimate 0 / 0; with the
    # scale factored out it is finite, and equal to the plain one where that one is representable (40 points)
    g = torch.Generator().manual_seed(8)
    probs = torch.softmax(0.5 * torch.randn(420, 6, 10, generator=g), dim=-1)
    sample = sampled_joint(probs[:400], 600, torch.Generator().manual_seed(0))
    assert (sample.log_scale < math.log(torch.finfo(torch.float64).tiny)).all()
    est = joint_entropies(exact_joint(probs[:0]), probs[400:], sample=sample)
    assert torch.isfinite(est).all()
    assert (est - est.mean()).abs().max() > 1e-3  # the candidates still differ: they are ranked
    assert _plain_estimate(probs[:400], 600, 0, probs[400:]).isnan().all()
    few = sampled_joint(probs[:40], 600, torch.Generator().manual_seed(1))
    assert torch.allclose(joint_entropies(exact_joint(probs[:0]), probs[400:], sample=few),
                          _plain_estimate(probs[:40], 600, 1, probs[400:]), rtol=1e-10)


# ------------------------------------------------------------------------- the greedy picks
def test_batchbald_skips_the_duplicate_that_bald_takes():
    # BALD: A, A2 and B all have MI ln 2 -> the top 2 are A and its duplicate A2.
    # BatchBALD: A first (ties to the lowest index), then B: I(A, B; w) = ln 4 beats I(A, A2; w) = ln 2
    assert _select(Bald(), DUPLICATES, 2) == [0, 1]
    picks, scores, sampled = batchbald_select(DUPLICATES, 2, 40_000, torch.Generator().manual_seed(0))
    assert picks == [0, 2] and sampled == [False, False]
    assert scores == pytest.approx([LN2, 2 * LN2], abs=1e-12)
    assert _select(BatchBald(passes=4), DUPLICATES, 2, indices=[10, 11, 12, 13]) == [10, 12]  # pool indices


@pytest.mark.parametrize("seed", range(5))
def test_k1_picks_balds_top_point(seed):
    probs = _noisy(seed)
    mi = mutual_information(probs)
    top2 = torch.topk(mi, 2).values
    assert top2[0] - top2[1] > 1e-9  # no float near-tie at the top
    indices = np.arange(1000, 1000 + probs.shape[0])
    assert _select(BatchBald(passes=20), probs, 1, indices=indices) == _select(Bald(), probs, 1, indices=indices)


def test_the_first_pick_is_balds_score():
    probs = _noisy(7)
    _, scores, _ = batchbald_select(probs, 1, 40_000, torch.Generator().manual_seed(0))
    assert scores[0] == pytest.approx(float(mutual_information(probs).max()), abs=1e-12)


def test_exact_while_c_to_the_n_is_at_most_samples_then_sampled():
    probs = _noisy(1, n=30, t=4, c=2)
    # C = 2, M = 4: exact with 0, 1, 2 points chosen (1, 2, 4 <= 4), sampled from the fourth pick on
    _, _, sampled = batchbald_select(probs, 6, 4, torch.Generator().manual_seed(0))
    assert sampled == [False, False, False, True, True, True]
    s = BatchBald(passes=4, samples=4)
    _select(s, probs, 6)
    assert s.last_sampled == sampled


def test_sampled_picks_follow_the_run_generator_only():
    probs = _noisy(2, n=300, t=10, c=10)
    state = torch.get_rng_state()
    s = BatchBald(passes=10, samples=50)  # exact for 1 point, sampled from the third pick on
    first = _select(s, probs, 8, seed=1)
    assert torch.equal(state, torch.get_rng_state())  # torch's global generator untouched
    torch.manual_seed(123)
    assert _select(s, probs, 8, seed=1) == first
    assert len(set(first)) == 8
    others = {tuple(_select(s, probs, 8, seed=k)) for k in range(2, 8)}
    assert any(o != tuple(first) for o in others)  # the sample, hence the picks, depend on the run's seed
    assert all(o[:2] == tuple(first[:2]) for o in others)  # the exact picks do not


def test_scores_are_the_joint_mutual_information_and_increase():
    probs = _noisy(5, n=100, t=10, c=5)
    picks, scores, _ = batchbald_select(probs, 3, 40_000, torch.Generator().manual_seed(0))
    # the third score is I(y_1, y_2, y_3; w) = H[y_1, y_2, y_3] - sum_j H[y_j | w], computed here directly
    h = joint_entropies(exact_joint(probs[picks[:2]]), probs[picks[2:3]])
    assert scores[2] == pytest.approx(float(h - conditional_entropy(probs[picks]).sum()), abs=1e-12)
    assert scores[0] < scores[1] < scores[2]


def test_budget_above_the_candidates_or_nan_is_refused():
    with pytest.raises(ValueError, match="budget of 5 from 4"):
        batchbald_select(DUPLICATES, 5, 100, torch.Generator())
    bad = DUPLICATES.clone()
    bad[3, 0, 0] = float("nan")
    with pytest.raises(Exception, match="BatchBALD score"):
        batchbald_select(bad, 2, 100, torch.Generator())


# ------------------------------------------------------------------------- consistent MC-dropout passes
class _Probe(nn.Module):
    """A constant input through Dropout(0.5) to the logits: each row's posterior shows its own mask."""

    def __init__(self, channels: bool = False) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(0.5) if channels else nn.Dropout(0.5)
        self.channels = channels

    def forward(self, x):
        from albench.models.base import ModelOutput

        n = x.shape[0]
        h = torch.ones(n, 6, 2, 2) if self.channels else torch.ones(n, 6)
        h = self.dropout(h).reshape(n, 6, -1).mean(dim=2)
        return ModelOutput(h, h, ())


def _passes(model, spec, n=10, batch_size=4):
    from albench.data.augment import BatchTransform
    from albench.engine.inference import compute_outputs

    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    return compute_outputs(model=model, aux=None, task=None, needs=frozenset({spec}), images=images,
                           indices=np.arange(n), transform=BatchTransform((0.5,), (0.25,)), batch_size=batch_size,
                           device=torch.device("cpu")).stochastic


@pytest.mark.parametrize("channels", [False, True])
def test_consistent_passes_share_one_mask_per_pass_across_chunks(channels):
    state = torch.get_rng_state()
    raw = _passes(_Probe(channels), StochasticPasses(passes=6, seed=3, consistent=True))
    assert torch.equal(state, torch.get_rng_state())
    assert raw.shape == (10, 6, 6)
    assert torch.equal(raw, raw[:1].expand_as(raw))  # every candidate, in all three chunks, saw pass t's mask
    assert len({tuple(raw[0, t].tolist()) for t in range(6)}) > 1  # the passes differ
    assert torch.equal(raw, _passes(_Probe(channels), StochasticPasses(passes=6, seed=3, consistent=True)))
    per_item = _passes(_Probe(channels), StochasticPasses(passes=6, seed=3))
    assert not torch.equal(per_item, per_item[:1].expand_as(per_item))  # BALD's passes: a mask per candidate


def test_consistent_masks_keep_the_layers_p():
    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(0.25)

        def forward(self, x):
            from albench.models.base import ModelOutput

            h = self.dropout(torch.ones(x.shape[0], 400))
            return ModelOutput(h, h, ())

    raw = _passes(Wide(), StochasticPasses(passes=5, seed=0, consistent=True), n=3)
    p = raw[0, 0]
    kept = int((p > p.min()).sum())
    assert 0.65 < kept / 400 < 0.85


def test_needs_declare_consistent_unreduced_passes():
    (spec,) = make_strategy("batchbald", {"passes": 7}).needs_for("classification")
    assert isinstance(spec, StochasticPasses)
    assert (spec.passes, spec.batchnorm, spec.reduce, spec.consistent, spec.seed) == (7, "eval", None, True, None)


# ------------------------------------------------------------------------- params and config checks
def test_registered_with_declared_defaults_and_no_quirks():
    from albench.config import StrategyConfig, TrainConfig
    from albench.plan import resolve_strategy

    assert get_strategy("batchbald") is BatchBald
    s = make_strategy("batchbald", {})
    assert (s.passes, s.samples, s.subset) == (100, 40_000, None)
    for protocol in ("paper", "official"):
        st, _, quirks, flags = resolve_strategy(StrategyConfig("batchbald"), protocol, TrainConfig(), "s")
        assert quirks == [] and flags == [] and st.params["samples"] == 40_000


@pytest.mark.parametrize("params, field", [({"samples": 50}, "samples"), ({"passes": 1}, "passes"),
                                           ({"subset": 0}, "subset"), ({"samples": 1}, "samples")])
def test_bad_params_are_refused_naming_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        make_strategy("batchbald", params)
    assert err.value.field.endswith(field)


def test_a_subset_below_the_budget_is_refused():
    with pytest.raises(ConfigError, match="subset"):
        BatchBald.check_schedule({"subset": 5, "passes": 10, "samples": 100}, pool_size=100, initial=10, budget=10,
                                 cycles=2, path="strategies[0].params")
    BatchBald.check_schedule({"subset": 10, "passes": 10, "samples": 100}, pool_size=100, initial=10, budget=10,
                             cycles=2, path="strategies[0].params")


def test_dropout_zero_is_refused_at_config_load(tiny_raw, tmp_path, capsys):
    from albench.cli import main
    from tests.conftest import write_yaml

    tiny_raw["strategies"] = [{"name": "batchbald", "params": {"passes": 5, "samples": 100}}]
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", tiny_raw)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "model.params.dropout" in err and "batchbald" in err
    tiny_raw["model"]["params"]["dropout"] = 0.5
    assert main(["run", str(write_yaml(tmp_path / "c1.yaml", tiny_raw)), "--dry-run"]) == 0
