"""CoreGCN: k-center greedy on the GCN's hidden features (paper), on those and the output logit (official,
since a040272) or on the input features (the superseded official code, d8993bc)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from albench.config import build_config
from albench.plan import make_plan
from albench.strategies.base import Inputs, Outputs, PoolState
from albench.strategies.coreset import kcenter_greedy
from albench.strategies.gcn import CoreGCN
from albench.strategies.registry import make_strategy
from tests.test_uncertaingcn import _retrained, _synthetic


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny graphs: threads only add hand-offs


def _circle(degrees) -> torch.Tensor:
    r = torch.tensor([math.radians(a) for a in degrees], dtype=torch.float64)
    return torch.stack([torch.cos(r), torch.sin(r)], dim=1) * 5  # scale is removed by the L2 normalisation


def test_superseded_quirk_runs_kcenter_on_the_normalised_embeddings():
    # Unit circle, labeled at 0 deg. Farthest: 180 (chord 2), then 90 (chord sqrt 2 to both 0 and 180),
    # then 45 (chord 2 sin 22.5 deg to 0 and 90) before 10 (chord 2 sin 5 deg to 0).
    s = make_strategy("coregcn", {"kcenter_features": "input"})
    cand = np.array([20, 21, 22, 23])
    inputs = Inputs(candidates=Outputs(indices=cand, embeddings=_circle([10, 90, 180, 45]).float()),
                    labeled=Outputs(indices=np.array([0]), embeddings=_circle([0]).float()),
                    device=torch.device("cpu"))
    pool = PoolState(images=torch.zeros(30, 1, 2, 2, dtype=torch.uint8), labeled=np.array([0]),
                     labeled_targets=torch.zeros(1, dtype=torch.long), num_classes=2)
    assert s.select(cycle=1, budget=4, pool=pool, inputs=inputs, rng=np.random.default_rng(0)).tolist() == \
        [22, 21, 23, 20]


def test_paper_runs_kcenter_on_the_gcn_hidden_features():
    inputs, pool = _synthetic()
    s = make_strategy("coregcn", {"steps": 30, "hidden": 16})
    picked = s.select(cycle=1, budget=6, pool=pool, inputs=inputs, rng=np.random.default_rng(2))
    _, hidden, n_u = _retrained(inputs, np.random.default_rng(2), hidden=16, dropout=0.3, steps=30, lr=1e-3,
                                weight_decay=5e-4, lambda_=1.2)
    order = kcenter_greedy(hidden[:n_u], 6, centers=hidden[n_u:])
    assert picked.tolist() == inputs.candidates.indices[order].tolist()
    assert hidden.shape[1] == 16
    # the hidden features give a different query than the inputs would (the GCN is really used)
    official = make_strategy("coregcn", {"kcenter_features": "input"})
    assert official.select(cycle=1, budget=6, pool=pool, inputs=inputs,
                           rng=np.random.default_rng(2)).tolist() != picked.tolist()


def test_official_protocol_switches_both_quirks(tiny_raw):
    raw = dict(tiny_raw, protocol="official", strategies=["coregcn"])
    (rc,) = make_plan(build_config(raw))
    assert rc.quirks == ["train-20-epochs", "official-std", "kcenter-on-hidden-and-output"]
    assert rc.strategy.params["kcenter_features"] == "hidden-output"
    assert rc.train.epochs == 20 and rc.train.schedule.name == "constant" and rc.train.init == "fresh"
    assert rc.train.augment.std == [0.2023, 0.1994, 0.2010]
    # the superseded behaviour is a quirk of its own, on only when listed
    old = dict(tiny_raw, protocol="official",
               strategies=[{"name": "coregcn", "quirks": ["kcenter-on-input-features-d8993bc"]}])
    (rc_old,) = make_plan(build_config(old))
    assert rc_old.strategy.params["kcenter_features"] == "input"
    (paper,) = make_plan(build_config(dict(tiny_raw, strategies=["coregcn"])))
    assert paper.quirks == [] and paper.strategy.params["kcenter_features"] == "hidden"


def test_bad_kcenter_features_is_refused():
    from albench.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_strategy("coregcn", {"kcenter_features": "output"})
    assert err.value.field == "params.kcenter_features"
    assert CoreGCN.param_types()["kcenter_features"][1] == "hidden"
