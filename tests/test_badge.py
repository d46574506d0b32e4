"""BADGE: gradient embeddings, the factorised distance, k-means++ seeding by hand, and the wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from albench.errors import ConfigError
from albench.strategies.badge import Badge, draw_d2, gradient_factors, gradient_sq_distance, kmeanspp_seeding
from albench.strategies.base import Inputs, Need, Outputs, PoolState
from albench.strategies.registry import get_strategy, make_strategy

# A hand-made set. Every posterior is (0.5, 0.5), so y^ = class 0 (first on ties) and a = (0.5, -0.5):
# g = 0.5 (h, -h), |g|^2 = 0.5 |h|^2 and |g_i - g_j|^2 = 0.5 |h_i - h_j|^2.
#   h: (4, 0) (4, 0) is the largest norm -> first center; then D^2 to it:
#      (0, 0) -> 0.5 * 16 = 8;  (1, 0) -> 0.5 * 9 = 4.5;  (0, 3) -> 0.5 * 25 = 12.5;  (2, 0) -> 0.5 * 4 = 2
HAND_H = torch.tensor([[4.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [2.0, 0.0]], dtype=torch.float64)
HAND_P = torch.full((5, 2), 0.5, dtype=torch.float64)
HAND_D2 = np.array([0.0, 8.0, 4.5, 12.5, 2.0])  # sum 27
# Chi-square threshold: the 0.999 quantile of the statistic under the null (a 0.1% false-alarm rate
# for a correct sampler; the draws are seeded, so the test is deterministic).
ALPHA = 0.001


def _explicit(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The N x C*d gradient embeddings, built explicitly (only in tests)."""
    return (a[:, :, None] * h[:, None, :]).reshape(a.shape[0], -1)


def _inputs(p, h, indices=None) -> Inputs:
    idx = np.arange(len(p)) if indices is None else np.asarray(indices)
    return Inputs(candidates=Outputs(indices=idx, posteriors=p, embeddings=h), labeled=None,
                  device=torch.device("cpu"))


def _pool(n: int) -> PoolState:
    return PoolState(images=torch.zeros(n, 1, 1, 1, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.long), num_classes=2)


def test_gradient_embedding_blocks_by_hand():
    # p = (0.2, 0.7, 0.1): y^ = 1, a = (-0.2, 0.3, -0.1); h = (1, 2) -> g = (-0.2, -0.4, 0.3, 0.6, -0.1, -0.2)
    a, h = gradient_factors(torch.tensor([[0.2, 0.7, 0.1]], dtype=torch.float64),
                            torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    assert torch.allclose(_explicit(a, h), torch.tensor([[-0.2, -0.4, 0.3, 0.6, -0.1, -0.2]], dtype=torch.float64))


def test_factorised_distance_equals_the_explicit_one():
    g = torch.Generator().manual_seed(0)
    for n, c, d in [(7, 3, 5), (40, 10, 16), (1, 2, 1)]:
        p = torch.softmax(3 * torch.randn(n, c, generator=g, dtype=torch.float64), dim=1)
        a, h = gradient_factors(p, torch.randn(n, d, generator=g, dtype=torch.float64))
        emb = _explicit(a, h)
        g_sq = (emb ** 2).sum(dim=1)
        for j in range(n):
            want = ((emb - emb[j]) ** 2).sum(dim=1)
            got = gradient_sq_distance(a, h, g_sq, j)
            assert torch.allclose(got, want, rtol=0, atol=1e-12), (n, c, d, j)
    # float32 inputs: the same within float32 rounding, never negative
    p = torch.softmax(torch.randn(30, 10, generator=g), dim=1)
    a, h = gradient_factors(p, torch.randn(30, 64, generator=g).relu())
    emb = _explicit(a.double(), h.double())
    got = gradient_sq_distance(a, h, (emb ** 2).sum(dim=1).float(), 3)
    assert got.dtype == torch.float32 and (got >= 0).all() and got[3] < 1e-4
    assert torch.allclose(got.double(), ((emb - emb[3]) ** 2).sum(dim=1), rtol=1e-4, atol=1e-4)


def test_first_pick_is_the_largest_gradient_norm():
    # |g|^2 = |a|^2 |h|^2; the largest h is not the largest g: a confident point has a small a.
    p = torch.tensor([[0.99, 0.01], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]], dtype=torch.float64)
    h = torch.tensor([[10.0], [3.0], [4.0], [3.0]], dtype=torch.float64)
    # |a|^2 = 2 (1 - p_max)^2: 0.0002, 0.5, 0.02, 0.32 -> |g|^2 = 0.02, 4.5, 0.32, 2.88
    for seed in range(5):
        assert kmeanspp_seeding(*gradient_factors(p, h), 1, np.random.default_rng(seed))[0] == 1
    # the strategy maps it to the pool index
    picked = Badge().select(cycle=1, budget=1, pool=_pool(40), inputs=_inputs(p, h, [10, 20, 30, 39]),
                            rng=np.random.default_rng(0))
    assert picked.tolist() == [20]


def test_second_pick_follows_d_squared_by_chi_square():
    draws = 3000
    counts = np.zeros(5)
    for seed in range(draws):
        order = Badge().select(cycle=1, budget=2, pool=_pool(5), inputs=_inputs(HAND_P, HAND_H),
                               rng=np.random.default_rng(seed))
        assert order[0] == 0  # the largest norm, deterministic
        counts[order[1]] += 1
    assert counts[0] == 0  # a chosen point is never drawn again
    expected = draws * HAND_D2[1:] / HAND_D2.sum()
    stat = ((counts[1:] - expected) ** 2 / expected).sum()
    assert stat < chi2.ppf(1 - ALPHA, df=3), (counts, expected, stat)


def test_draw_d2_matches_exact_probabilities_and_skips_zero_weights():
    w = torch.tensor([0.0, 1.0, 0.0, 4.0, 2.0, 0.0, 9.0, 0.5], dtype=torch.float32)
    chosen = (w == 0).numpy()
    rng = np.random.default_rng(123)
    buf = torch.empty(len(w), dtype=torch.float64)
    draws = 20000
    counts = np.bincount([draw_d2(w, rng, chosen, buf) for _ in range(draws)], minlength=len(w))
    assert counts[chosen].sum() == 0
    pos = ~chosen
    expected = draws * w.numpy()[pos] / w.sum().item()
    stat = ((counts[pos] - expected) ** 2 / expected).sum()
    assert stat < chi2.ppf(1 - ALPHA, df=pos.sum() - 1), (counts, expected, stat)


def test_all_distances_zero_falls_back_to_a_uniform_draw_from_rng():
    # five identical candidates: every D is 0 after the first center
    p = torch.full((5, 2), 0.5, dtype=torch.float64)
    h = torch.ones(5, 3, dtype=torch.float64)
    for seed in range(4):
        order = kmeanspp_seeding(*gradient_factors(p, h), 3, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)  # the documented draws: uniform over the not-chosen positions
        second = int(rng.choice(np.array([1, 2, 3, 4])))
        third = int(rng.choice(np.setdiff1d([1, 2, 3, 4], [second])))
        assert order.tolist() == [0, second, third]


def test_no_point_is_chosen_twice_even_with_duplicate_embeddings():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 4, generator=g, dtype=torch.float64).repeat(5, 1)  # each point 5 times
    p = torch.softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), dim=1).repeat(5, 1)
    order = kmeanspp_seeding(*gradient_factors(p, h), 30, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(30))


def test_same_rng_gives_the_same_query_and_seeds_differ():
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(200, 10, generator=g), dim=1)
    h = torch.randn(200, 32, generator=g).relu()
    run = lambda s: Badge().select(cycle=1, budget=20, pool=_pool(200), inputs=_inputs(p, h),  # noqa: E731
                                   rng=np.random.default_rng(s))
    state = torch.get_rng_state()
    assert run(0).tolist() == run(0).tolist()
    assert run(0).tolist() != run(1).tolist()
    assert torch.equal(state, torch.get_rng_state())  # torch's global RNG is left alone


def test_declares_embeddings_and_posteriors_and_registers_without_quirks():
    cls = get_strategy("badge")
    assert cls is Badge and cls.needs == frozenset({Need.EMBEDDINGS, Need.POSTERIORS}) and cls.quirks == ()
    s = make_strategy("badge", {"subset": 3})
    pool = _pool(10)
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert len(cand) == 3 and set(cand) <= set(range(10))
    whole = make_strategy("badge").candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert whole.tolist() == list(range(10))


@pytest.mark.parametrize("params", [{"subset": 0}, {"subset": -5}, {"chunk": 3}])
def test_bad_params_are_refused(params):
    with pytest.raises(ConfigError):
        make_strategy("badge", params)


@pytest.mark.slow
def test_end_to_end_on_digits(tiny_raw, one_torch_thread):
    from albench.config import build_config
    from albench.engine.loop import execute_run
    from albench.plan import make_plan

    raw = dict(tiny_raw, strategies=["badge"])
    (rc,) = make_plan(build_config(raw))
    outcome = execute_run(rc)
    assert outcome.state == "complete", outcome.error
    queries = json.loads((rc.run_dir / "queries.json").read_text())
    assert [len(queries[str(c)]) for c in range(3)] == [20, 20, 20]
    assert len({i for q in queries.values() for i in q}) == 60
