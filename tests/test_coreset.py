"""Core-Set: k-center greedy on hand-checkable points, and the strategy's wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.errors import ConfigError
from albench.strategies.base import Inputs, Outputs, PoolState
from albench.strategies.coreset import CoreSet, kcenter_greedy, min_sq_dist_to_centers
from albench.strategies.registry import make_strategy


def _line(xs) -> torch.Tensor:
    """Points on the x-axis of a 3-d space (float64: exact distances)."""
    p = torch.zeros(len(xs), 3, dtype=torch.float64)
    p[:, 0] = torch.tensor(xs, dtype=torch.float64)
    return p


def test_points_on_a_line_are_picked_farthest_first():
    # Labeled center at 0. Candidates 2, 3, 10, 11, 20:
    # 20 (distance 20) -> 10 (min distance 10; 11 is 9 from 20) -> 3 (3 from 0 vs 2 for point 2) -> 2.
    cand = _line([2, 3, 10, 11, 20])
    order = kcenter_greedy(cand, 4, centers=_line([0]), rng=np.random.default_rng(0))
    assert order.tolist() == [4, 2, 1, 0]


def test_ties_go_to_the_lowest_position():
    # 1 and 9 are both 1 away from their nearest center {0, 10}: the lower position wins.
    order = kcenter_greedy(_line([9, 1, 5]), 3, centers=_line([0, 10]))
    assert order.tolist() == [2, 0, 1]  # 5 (distance 5), then 9 and 1 tie at 1 -> position 0 first


def test_selected_positions_act_as_centers():
    pts = _line([0, 2, 3, 10, 11, 20])
    by_position = kcenter_greedy(pts, 4, selected=np.array([0]))
    by_matrix = kcenter_greedy(pts[1:], 4, centers=pts[:1])
    assert by_position.tolist() == [5, 3, 2, 1]
    assert (by_position - 1).tolist() == by_matrix.tolist()


def test_empty_labeled_set_starts_from_a_seeded_random_center():
    pts = _line(list(range(0, 100, 3)))  # 34 points 0, 3, ..., 99
    order = kcenter_greedy(pts, 2, rng=np.random.default_rng(7))
    first = int(np.random.default_rng(7).integers(len(pts)))  # the documented draw
    assert order[0] == first
    assert order[1] == (0 if first * 3 >= 50 else len(pts) - 1)  # then the farthest end of the line
    assert kcenter_greedy(pts, 2, rng=np.random.default_rng(7)).tolist() == order.tolist()
    firsts = {int(kcenter_greedy(pts, 1, rng=np.random.default_rng(s))[0]) for s in range(10)}
    assert len(firsts) > 1  # the seed matters
    with pytest.raises(ValueError, match="rng"):
        kcenter_greedy(pts, 1)


def test_chunking_does_not_change_the_result_and_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 16, generator=g, dtype=torch.float64)
    c = torch.rand(40, 16, generator=g, dtype=torch.float64)
    md = torch.cdist(x, c).min(dim=1).values
    expect = []
    for _ in range(25):  # the textbook greedy on exact distances
        i = int(torch.argmax(md))
        expect.append(i)
        md = torch.minimum(md, (x - x[i]).norm(dim=1))
        md[i] = -1
    for chunk in (1, 7, 64, 10_000):
        assert kcenter_greedy(x, 25, centers=c, chunk_rows=chunk).tolist() == expect


def test_min_distance_to_centers_by_hand():
    d = min_sq_dist_to_centers(_line([0, 4, 7]), _line([1, 5]), chunk_rows=2)
    assert d.tolist() == [1.0, 1.0, 4.0]


def test_duplicates_are_never_picked_twice():
    pts = torch.ones(5, 4)  # all identical: every distance is 0 (or rounding noise)
    order = kcenter_greedy(pts, 5, centers=torch.ones(1, 4))
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot choose 6"):
        kcenter_greedy(pts, 6, centers=torch.ones(1, 4))


def test_half_precision_features_are_widened():
    order = kcenter_greedy(_line([2, 3, 10, 11, 20]).to(torch.bfloat16), 2, centers=_line([0]).float())
    assert order.tolist() == [4, 2]


def _pool(n=30, labeled=(0, 1)) -> PoolState:
    return PoolState(images=torch.zeros(n, 1, 2, 2, dtype=torch.uint8), labeled=np.array(labeled),
                     labeled_targets=torch.zeros(len(labeled), dtype=torch.long), num_classes=3)


def test_strategy_maps_positions_to_pool_indices():
    s = make_strategy("coreset")
    cand = np.array([12, 13, 14, 15, 16])
    inputs = Inputs(candidates=Outputs(indices=cand, embeddings=_line([2, 3, 10, 11, 20]).float()),
                    labeled=Outputs(indices=np.array([0]), embeddings=_line([0]).float()),
                    device=torch.device("cpu"))
    picked = s.select(cycle=1, budget=3, pool=_pool(), inputs=inputs, rng=np.random.default_rng(0))
    assert picked.tolist() == [16, 14, 13]


def test_candidates_are_a_seeded_subset_of_the_unlabeled_pool():
    pool = _pool(n=30, labeled=(0, 1, 2))
    s = make_strategy("coreset", {"subset": 10})
    c = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3))
    assert len(c) == 10 and len(set(c.tolist())) == 10 and not set(c.tolist()) & {0, 1, 2}
    assert c.tolist() == s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(3)).tolist()
    whole = make_strategy("coreset", {"subset": None}).candidates(cycle=1, pool=pool, rng=np.random.default_rng(3))
    assert whole.tolist() == list(range(3, 30))


def test_declares_embeddings_of_candidates_and_labeled():
    from albench.strategies.base import Need

    assert CoreSet.needs == {Need.EMBEDDINGS, Need.LABELED}


@pytest.mark.parametrize("params, field", [({"subset": 0}, "subset"), ({"chunk_rows": 0}, "chunk_rows")])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        make_strategy("coreset", params)
    assert err.value.field == f"params.{field}"
