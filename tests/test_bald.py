"""BALD: mutual information by hand, the engine's seeded stochastic passes, the dropout check, the wiring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from albench.cli import main
from albench.data.augment import BatchTransform
from albench.engine.inference import compute_outputs
from albench.models.base import ModelOutput
from albench.strategies.bald import Bald, mutual_information, mutual_information_official
from albench.strategies.base import Inputs, Outputs, PoolState, StochasticPasses
from albench.strategies.registry import get_strategy, make_strategy
from tests.conftest import write_yaml


def test_mutual_information_by_hand():
    # T = 2 passes, C = 2 classes, three candidates:
    #  0: passes (1, 0) and (0, 1): mean (.5, .5), H = ln 2; each pass H = 0 (0 log 0 = 0) -> MI = ln 2
    #  1: passes (.5, .5) twice: the passes agree -> MI = 0
    #  2: passes (.5, .5) and (1, 0): mean (.75, .25), H = -(.75 ln .75 + .25 ln .25) = 0.562335;
    #     mean of H = (ln 2 + 0) / 2 = 0.346574 -> MI = 0.215762
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],
                          [[0.5, 0.5], [0.5, 0.5]],
                          [[0.5, 0.5], [1.0, 0.0]]])
    want = [math.log(2), 0.0, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - math.log(2) / 2]
    got = mutual_information(probs)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert want[2] == pytest.approx(0.215762, abs=1e-6)


def test_official_log_gives_nan_on_zero_and_select_ranks_it_last():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],  # the highest MI, but a zero probability -> NaN
                          [[0.6, 0.4], [0.4, 0.6]],
                          [[0.5, 0.5], [0.5, 0.5]]])
    off = mutual_information_official(probs)
    assert math.isnan(off[0]) and off[1] > 0 and off[2] == pytest.approx(0.0, abs=1e-6)
    pool = PoolState(images=torch.zeros(3, 1, 1, 1, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.long), num_classes=2)
    for log_zero, reduce, want in [("zero", mutual_information, [0, 1]),
                                   ("nan-last", mutual_information_official, [1, 2])]:
        inputs = Inputs(candidates=Outputs(indices=np.arange(3), stochastic=reduce(probs)), labeled=None,
                        device=torch.device("cpu"))
        s = Bald(log_zero=log_zero)
        assert s.select(cycle=1, budget=2, pool=pool, inputs=inputs, rng=np.random.default_rng(0)).tolist() == want


# ------------------------------------------------------------------------- the engine's stochastic passes
class _Tiny(nn.Module):
    """Mean pixel -> 4-d embedding -> BatchNorm -> Dropout -> 3 classes."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Linear(1, 4)
        self.bn = nn.BatchNorm1d(4)
        self.dropout = nn.Dropout(p)
        self.fc = nn.Linear(4, 3)
        self.modes: list[tuple[bool, bool]] = []  # (bn.training, dropout.training) seen by each forward

    def forward(self, x):
        self.modes.append((self.bn.training, self.dropout.training))
        emb = self.bn(self.embed(x.float().mean(dim=(1, 2, 3)).unsqueeze(1)))
        return ModelOutput(self.fc(self.dropout(emb)), emb, ())


def _passes(model, spec, n=10, batch_size=4):
    images = torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return compute_outputs(model=model, aux=None, task=None, needs=frozenset({spec}), images=images,
                           indices=np.arange(n), transform=BatchTransform((0.5,), (0.25,)), batch_size=batch_size,
                           device=torch.device("cpu")).stochastic


def _model(p=0.5):
    torch.manual_seed(3)
    m = _Tiny(p)
    m.bn.running_mean.fill_(0.1)
    m.bn.running_var.fill_(2.0)
    return m


def test_passes_are_seeded_and_leave_the_global_rng_alone():
    m = _model()
    state = torch.get_rng_state()
    raw = _passes(m, StochasticPasses(passes=6, seed=5), n=10)
    assert torch.equal(state, torch.get_rng_state())  # masks come from the spec's generator only
    torch.manual_seed(99)  # the global RNG does not matter
    assert torch.equal(raw, _passes(m, StochasticPasses(passes=6, seed=5), n=10))
    assert not torch.equal(raw, _passes(m, StochasticPasses(passes=6, seed=6), n=10))
    assert raw.shape == (10, 6, 3) and torch.allclose(raw.sum(dim=2), torch.ones(10, 6))
    assert (raw.std(dim=1) > 0).any()  # the passes differ


def test_batchnorm_eval_mode_and_reduce_in_chunks():
    m = _model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    seen_rows = []

    def reduce(probs):
        seen_rows.append(probs.shape[0])
        return mutual_information(probs)

    mi = _passes(m, StochasticPasses(passes=4, reduce=reduce, seed=1), n=10, batch_size=4)
    assert seen_rows == [4, 4, 2]  # one eval batch at a time
    assert mi.shape == (10,)
    raw = _passes(m, StochasticPasses(passes=4, seed=1), n=10, batch_size=4)
    assert torch.allclose(mi, mutual_information(raw))
    assert all(mode == (False, False) for mode in m.modes)  # BatchNorm and dropout modules in eval mode
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_batchnorm_train_mode_uses_batch_statistics_and_restores_running_ones():
    m = _model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.modes.clear()
    train = _passes(m, StochasticPasses(passes=3, batchnorm="train", seed=2), n=8)
    assert m.modes and all(mode == (True, False) for mode in m.modes)  # BN train; dropout via the seeded hook
    assert not m.training and not m.bn.training  # back in eval mode
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # running statistics put back
    assert not torch.allclose(train, _passes(m, StochasticPasses(passes=3, batchnorm="eval", seed=2), n=8))


def test_masks_use_the_layer_p_with_inverted_scaling():
    # embedding of ones through Dropout(p = 0.25) into an identity-like head: each kept unit is 1 / 0.75
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(0.25)

        def forward(self, x):
            h = self.dropout(torch.ones(x.shape[0], 400))
            return ModelOutput(h, h, ())

    seen = []
    _passes(Probe(), StochasticPasses(passes=5, reduce=lambda p: seen.append(p) or p[:, 0, 0], seed=0), n=4)
    # softmax over 400 units taking values {0, 4/3}: recover the kept fraction from one row
    p = seen[0][0, 0]
    kept = int((p > p.min()).sum())
    assert 0.65 < kept / 400 < 0.85


def test_a_model_without_dropout_or_a_spec_without_seed_is_refused():
    with pytest.raises(ValueError, match="dropout layer with p > 0"):
        _passes(_model(p=0.0), StochasticPasses(passes=3, seed=0))
    with pytest.raises(ValueError, match="seed"):
        _passes(_model(), StochasticPasses(passes=3))


# ------------------------------------------------------------------------- the strategy and its config
def test_needs_declare_passes_the_engine_seeds_per_cycle():
    from albench.engine.inference import seed_stochastic

    s = make_strategy("bald", {"passes": 7})
    (spec,) = s.needs_for("classification")
    assert isinstance(spec, StochasticPasses) and spec.passes == 7 and spec.batchnorm == "eval"
    assert spec.reduce is mutual_information
    assert spec.seed is None  # left to the engine: derived from the run's seed and the cycle
    (seeded,) = seed_stochastic(s.needs_for("classification"), 123)
    assert seeded.seed == 123 and seeded.passes == 7
    pool = PoolState(images=torch.zeros(10, 1, 1, 1, dtype=torch.uint8), labeled=np.array([2]),
                     labeled_targets=torch.zeros(1, dtype=torch.long), num_classes=2)
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(4))
    assert cand.tolist() == [0, 1, 3, 4, 5, 6, 7, 8, 9]


def test_official_quirks():
    from albench.config import StrategyConfig, TrainConfig
    from albench.plan import resolve_strategy

    assert get_strategy("bald") is Bald
    st, _, quirks, flags = resolve_strategy(StrategyConfig("bald"), "official", TrainConfig(), "s")
    assert quirks == ["train-mode-passes", "ten-passes", "log-zero-nan"] and flags == []
    assert (st.params["batchnorm"], st.params["passes"], st.params["log_zero"]) == ("train", 10, "nan-last")
    st, _, quirks, _ = resolve_strategy(StrategyConfig("bald"), "paper", TrainConfig(), "s")
    assert quirks == [] and (st.params["batchnorm"], st.params["passes"]) == ("eval", 20)


@pytest.mark.parametrize("params", [{"passes": 1}, {"subset": 0}, {"batchnorm": "frozen"}])
def test_bad_params_are_refused(params):
    from albench.errors import ConfigError

    with pytest.raises(ConfigError):
        make_strategy("bald", params)


def test_dropout_zero_is_refused_at_config_load(tiny_raw, tmp_path, capsys):
    tiny_raw["strategies"] = ["random", "bald"]
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)  # small-cnn without dropout (default 0)
    assert main(["run", str(cfg), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "model.params.dropout" in err and "0.5" in err
    tiny_raw["model"]["params"]["dropout"] = 0.0
    assert main(["run", str(write_yaml(tmp_path / "c0.yaml", tiny_raw)), "--dry-run"]) == 2
    tiny_raw["model"]["params"]["dropout"] = 0.5
    assert main(["run", str(write_yaml(tmp_path / "c1.yaml", tiny_raw)), "--dry-run"]) == 0
    tiny_raw["model"]["params"]["dropout"] = 1.0  # out of range for the model itself
    assert main(["run", str(write_yaml(tmp_path / "c2.yaml", tiny_raw)), "--dry-run"]) == 2


@pytest.mark.slow
def test_end_to_end_on_digits_is_deterministic(tiny_raw, tmp_path, one_torch_thread):
    from albench.config import build_config
    from albench.engine.loop import execute_run
    from albench.plan import make_plan

    queries = []
    for out in ("a", "b"):
        raw = dict(tiny_raw, strategies=[{"name": "bald", "params": {"passes": 5}}], output=str(tmp_path / out))
        raw["model"] = {"name": "small-cnn", "params": {"width": 8, "dropout": 0.5}}
        (rc,) = make_plan(build_config(raw))
        outcome = execute_run(rc)
        assert outcome.state == "complete", outcome.error
        queries.append(json.loads((rc.run_dir / "queries.json").read_text()))
    assert [len(queries[0][str(c)]) for c in range(3)] == [20, 20, 20]
    assert len({i for q in queries[0].values() for i in q}) == 60
    assert queries[0] == queries[1]


def test_a_model_without_a_dropout_param_is_refused(monkeypatch):
    from albench.errors import ConfigError
    from albench.models.registry import _REGISTRY, ModelEntry

    def builder(*, num_classes, in_channels, image_size, width: int = 8):
        raise AssertionError("never built at config load")

    monkeypatch.setitem(_REGISTRY, "no-dropout-net", ModelEntry("no-dropout-net", builder, "test", frozenset()))
    with pytest.raises(ConfigError, match="model.params.dropout") as exc:
        Bald.check_model({}, model="no-dropout-net", model_params={}, path="model.params")
    assert "no dropout param" in str(exc.value)
    Bald.check_model({}, model="small-cnn", model_params={"dropout": 0.25}, path="model.params")  # accepted
