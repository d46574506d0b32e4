"""PT4AL and its ablations on hand-made inputs: every chosen index is pinned.

The pretext stage is replaced by hand-written losses here (tests/test_pretext.py trains the real
thing), so each case can be checked by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import albench.strategies.pt4al as pt
from albench.config import StrategyConfig, TrainConfig
from albench.errors import ConfigError
from albench.plan import FLAG_BEST_ON_TEST, resolve_strategy
from albench.strategies.base import Inputs, Outputs, PoolState, PrepareContext
from albench.strategies.pretext import PretextResult
from albench.strategies.registry import make_strategy

# ------------------------------------------------------------------------------------------------
# sorting


def test_numeric_sort_is_descending_with_ties_by_position():
    losses = np.array([0.5, 2.0, 0.5, 1.0])
    assert pt.sort_losses(losses).tolist() == [1, 3, 0, 2]
    assert pt.sort_losses(losses, descending=False).tolist() == [0, 2, 3, 1]


def test_string_sort_puts_scientific_notation_by_its_leading_digit():
    # str(1.94e-05) is '1.94e-05', which sorts after '0.97' as text: the official batch 0 gets it
    losses = np.array([0.97, 1.94e-05, 0.5, 2.3])
    assert pt.loss_strings(losses).tolist() == ["0.97", "1.94e-05", "0.5", "2.3"]
    assert pt.sort_losses(losses, as_strings=True).tolist() == [3, 1, 0, 2]
    assert pt.sort_losses(losses).tolist() == [3, 0, 2, 1]  # numerically 1.94e-05 is the easiest
    assert pt.sort_losses(losses, descending=False, as_strings=True).tolist() == [2, 0, 1, 3]


def test_string_sort_writes_float32_losses_as_tensor_item_does():
    values = [1.94e-05, 0.97, 3.2e-07, 1.0]
    f32 = np.array(values, dtype=np.float32)
    want = [str(torch.tensor(v, dtype=torch.float32).item()) for v in values]
    assert pt.loss_strings(f32).tolist() == want
    # '3.2...e-07' > '1.9...e-05' > '1.0' > '0.97' as text
    assert pt.sort_losses(f32, as_strings=True).tolist() == [2, 0, 3, 1]


def test_string_sort_ties_are_reversed_with_the_rest():
    losses = np.array([0.25, 0.25, 0.5])
    assert pt.sort_losses(losses, as_strings=True).tolist() == [2, 1, 0]


def test_numeric_sort_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        pt.sort_losses(np.array([0.1, np.nan]))


# ------------------------------------------------------------------------------------------------
# batch split


def test_split_is_equal_when_it_divides():
    batches = pt.split_batches(np.arange(12)[::-1], 3)
    assert [b.tolist() for b in batches] == [[11, 10, 9, 8], [7, 6, 5, 4], [3, 2, 1, 0]]


def test_split_remainder_goes_to_the_first_batches():
    # 10 = 3 * 3 + 1: the first batch holds the one extra image, nothing is dropped
    batches = pt.split_batches(np.arange(10), 3)
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    batches = pt.split_batches(np.arange(11), 4)
    assert [len(b) for b in batches] == [3, 3, 3, 2]


def test_split_rejects_more_batches_than_images():
    with pytest.raises(ValueError):
        pt.split_batches(np.arange(3), 4)


# ------------------------------------------------------------------------------------------------
# first cycle


def test_uniform_positions_match_the_official_every_fifth():
    assert np.array_equal(pt.uniform_positions(5000, 1000), np.arange(1000) * 5)
    assert pt.uniform_positions(10, 3).tolist() == [0, 3, 6]
    assert pt.uniform_positions(7, 3).tolist() == [0, 2, 4]
    assert pt.uniform_positions(4, 4).tolist() == [0, 1, 2, 3]


def test_first_cycle_samplers_pick_exact_indices():
    batch = np.arange(40, 50)  # already in loss order
    rng = np.random.default_rng(0)
    assert pt.first_cycle_pick(batch, 3, "uniform", rng).tolist() == [40, 43, 46]
    assert pt.first_cycle_pick(batch, 3, "top-k", rng).tolist() == [40, 41, 42]
    assert pt.first_cycle_pick(batch, 3, "random", np.random.default_rng(0)).tolist() == [45, 49, 46]


def _ctx(tmp_path: Path, n: int, *, cycles: int = 3, initial: int = 2, budget: int = 2, seed: int = 0,
         n_test: int = 4) -> PrepareContext:
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    pool = PoolState(images=images, labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, dtype=torch.long), num_classes=3)
    return PrepareContext(pool=pool, test_images=torch.zeros(n_test, 1, 8, 8, dtype=torch.uint8), mean=(0.5,),
                          std=(0.25,), device=torch.device("cpu"), seed=seed, cycles=cycles, initial=initial,
                          budget=budget, pool_fingerprint="fp", cache_dir=tmp_path / "cache", run_dir=tmp_path / "run",
                          log=lambda s: None)


@pytest.fixture
def fake_pretext(monkeypatch):
    """Replace the pretext stage with given losses; returns a dict to fill with 'pool' and 'test'."""
    given: dict = {}

    def fake(spec, **kw):
        given["spec"] = spec
        return PretextResult(np.asarray(given["pool"], np.float32), np.asarray(given.get("test", [0.0]), np.float32),
                             "miss", "k", 1.5, 1, [])

    monkeypatch.setattr(pt, "pretext_losses", fake)
    return given


def _pool(n: int, labeled=()) -> PoolState:
    labeled = np.asarray(labeled, dtype=np.int64)
    return PoolState(images=torch.zeros(n, 1, 8, 8, dtype=torch.uint8), labeled=labeled,
                     labeled_targets=torch.zeros(len(labeled), dtype=torch.long), num_classes=3)


# losses of a 9-image pool; descending order: 4 (0.9), 7, 0, 2, 8, 5, 1, 6, 3 (0.1)
LOSSES = [0.7, 0.3, 0.6, 0.1, 0.9, 0.4, 0.2, 0.8, 0.5]


def test_prepare_sorts_and_splits_the_pretext_losses(tmp_path, fake_pretext):
    fake_pretext["pool"] = LOSSES
    s = make_strategy("pt4al")
    info = s.prepare(_ctx(tmp_path, 9, cycles=3))
    assert [b.tolist() for b in s.batches_] == [[4, 7, 0], [2, 8, 5], [1, 6, 3]]
    assert info["pt4al_batch_sizes"] == [3, 3, 3]
    assert info["pretext_cache"] == "miss" and info["pretext_train_seconds"] == 1.5
    low = make_strategy("pt4al", {"batch_order": "low-first"})
    low.prepare(_ctx(tmp_path, 9, cycles=3))
    assert [b.tolist() for b in low.batches_] == [[3, 6, 1], [5, 8, 2], [0, 7, 4]]


def test_prepare_string_sort_quirk(tmp_path, fake_pretext):
    fake_pretext["pool"] = [0.97, 1.94e-05, 0.5, 2.3]
    s = make_strategy("pt4al", {"loss_sort": "string"})
    s.prepare(_ctx(tmp_path, 4, cycles=2))
    assert [b.tolist() for b in s.batches_] == [[3, 1], [0, 2]]
    s = make_strategy("pt4al")
    s.prepare(_ctx(tmp_path, 4, cycles=2))
    assert [b.tolist() for b in s.batches_] == [[3, 0], [2, 1]]


def test_pretext_seed_is_fixed_by_default_and_the_run_seed_when_null(tmp_path, fake_pretext):
    fake_pretext["pool"] = LOSSES
    make_strategy("pt4al").prepare(_ctx(tmp_path, 9, seed=7))
    assert fake_pretext["spec"].seed == 0
    make_strategy("pt4al", {"pretext_seed": None}).prepare(_ctx(tmp_path, 9, seed=7))
    assert fake_pretext["spec"].seed == 7


def test_initial_samplers_on_the_first_batch(tmp_path, fake_pretext):
    fake_pretext["pool"] = np.linspace(1.0, 0.0, 20)  # already descending: batch 0 = 0..9
    for how, want in [("uniform", [0, 3, 6]), ("top-k", [0, 1, 2])]:
        s = make_strategy("pt4al", {"first_cycle": how})
        s.prepare(_ctx(tmp_path, 20, cycles=2))
        assert s.initial(size=3, pool=_pool(20), rng=np.random.default_rng(0)).tolist() == want
    s = make_strategy("pt4al", {"first_cycle": "random"})
    s.prepare(_ctx(tmp_path, 20, cycles=2))
    assert s.initial(size=3, pool=_pool(20), rng=np.random.default_rng(0)).tolist() == [5, 9, 6]


def test_initial_larger_than_the_first_batch_tops_up_from_the_next(tmp_path, fake_pretext):
    fake_pretext["pool"] = np.linspace(1.0, 0.0, 12)  # batches 0..3, 4..7, 8..11
    s = make_strategy("pt4al")
    s.prepare(_ctx(tmp_path, 12, cycles=3))
    # all of batch 0, then 2 of batch 1 at uniform positions 0 and 2
    assert s.initial(size=6, pool=_pool(12), rng=np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4, 6]


# ------------------------------------------------------------------------------------------------
# later cycles


def _inputs(indices, logits) -> Inputs:
    return Inputs(candidates=Outputs(indices=np.asarray(indices, dtype=np.int64),
                                     logits=torch.tensor(logits, dtype=torch.float32)),
                  labeled=None, device=torch.device("cpu"))


def _prepared(tmp_path, fake_pretext, params=None, *, n=9, cycles=3, budget=2):
    fake_pretext["pool"] = LOSSES[:n] if n <= 9 else np.linspace(1.0, 0.0, n)
    s = make_strategy("pt4al", params or {})
    s.prepare(_ctx(tmp_path, n, cycles=cycles, budget=budget))
    return s


def test_later_cycle_takes_the_least_confident_of_its_batch(tmp_path, fake_pretext):
    s = _prepared(tmp_path, fake_pretext)  # batches [4,7,0] [2,8,5] [1,6,3]
    pool = _pool(9, labeled=[4, 0])
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert cand.tolist() == [2, 5, 8]
    # top-1 posteriors: image 2 -> 0.67, image 5 -> 0.33 (uniform), image 8 -> 0.99
    logits = [[np.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]
    got = s.select(cycle=1, budget=2, pool=pool, inputs=_inputs(cand, logits), rng=np.random.default_rng(0))
    assert got.tolist() == [5, 2]


def test_entropy_sampler_takes_the_highest_entropy(tmp_path, fake_pretext):
    s = _prepared(tmp_path, fake_pretext, {"sampler": "entropy"})
    pool = _pool(9, labeled=[4, 0])
    # confidence and entropy disagree: [2, 2, -9] is confident-looking (top-1 0.5) with low entropy;
    # [1.2, 0, 0] has top-1 0.62 but a higher entropy
    logits = [[2.0, 2.0, -9.0], [1.2, 0.0, 0.0], [5.0, 0.0, 0.0]]
    got = s.select(cycle=1, budget=1, pool=pool, inputs=_inputs([2, 5, 8], logits), rng=np.random.default_rng(0))
    assert got.tolist() == [5]
    s2 = _prepared(tmp_path, fake_pretext)
    got = s2.select(cycle=1, budget=1, pool=pool, inputs=_inputs([2, 5, 8], logits), rng=np.random.default_rng(0))
    assert got.tolist() == [2]


def test_normalized_softmax_quirk_changes_the_choice(tmp_path, fake_pretext):
    # raw softmax: [0.3, 0, 0] is the least confident (0.40 < 0.73); over L2-normalised logits the
    # scale is gone and [10, 9, 0] is (0.42 < 0.58)
    logits = [[10.0, 9.0, 0.0], [0.3, 0.0, 0.0], [50.0, 0.0, 0.0]]
    pool = _pool(9, labeled=[4, 0])
    raw = _prepared(tmp_path, fake_pretext)
    assert raw.select(cycle=1, budget=1, pool=pool, inputs=_inputs([2, 5, 8], logits),
                      rng=np.random.default_rng(0)).tolist() == [5]
    norm = _prepared(tmp_path, fake_pretext, {"normalized_softmax": True})
    assert norm.select(cycle=1, budget=1, pool=pool, inputs=_inputs([2, 5, 8], logits),
                       rng=np.random.default_rng(0)).tolist() == [2]


def test_normalized_softmax_caps_confidence():
    logits = torch.zeros(1, 10)
    logits[0, 3] = 100.0
    top1 = pt.posteriors(logits, normalized=True).max().item()
    assert top1 == pytest.approx(np.e / (np.e + 9), rel=1e-6)
    assert pt.posteriors(logits).max().item() == pytest.approx(1.0)


def test_short_batch_is_topped_up_from_the_next_batch(tmp_path, fake_pretext):
    s = _prepared(tmp_path, fake_pretext, budget=3)  # batches [4,7,0] [2,8,5] [1,6,3]
    pool = _pool(9, labeled=[4, 7, 0, 2, 8])  # batch 1 has only image 5 left
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert cand.tolist() == [1, 3, 5, 6]
    # image 5 is taken whatever its score (its batch comes first); then the 2 least confident of batch 2
    conf = {1: 0.9, 3: 0.2, 5: 0.99, 6: 0.5}
    logits = [[np.log(conf[i] / (1 - conf[i]) * 2), 0.0, 0.0] for i in cand.tolist()]
    got = s.select(cycle=1, budget=3, pool=pool, inputs=_inputs(cand, logits), rng=np.random.default_rng(0))
    assert got.tolist() == [5, 3, 6]


def test_take_from_batches_wraps_around_to_earlier_batches():
    batches = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5])]
    got = pt.take_from_batches(batches, 2, 3, np.array([4]), lambda avail, m: avail[:m])
    assert got.tolist() == [5, 0, 1]
    with pytest.raises(ValueError, match="only"):
        pt.take_from_batches(batches, 0, 3, np.arange(5), lambda avail, m: avail[:m])


def test_artifacts_record_each_image_batch_and_the_losses(tmp_path, fake_pretext):
    """(state_dict through a checkpoint and a resumed pick: the contract suite, tests/test_contract_suite.py.)"""
    s = _prepared(tmp_path, fake_pretext)
    arts = s.artifacts()
    assert arts["pt4al_batch"].tolist() == [0, 2, 1, 2, 0, 1, 2, 0, 1]
    assert arts["pretext_loss_pool"].dtype == np.float32 and len(arts["pretext_loss_pool"]) == 9
    assert "pretext_loss_test" in arts


# ------------------------------------------------------------------------------------------------
# the official protocol


def test_official_protocol_switches_every_quirk_and_flags_best_on_test():
    st, train, quirks, flags = resolve_strategy(StrategyConfig("pt4al"), "official", TrainConfig(), "strategies[0]")
    assert quirks == ["string_sort", "normalized_softmax", "warm_start", "best_on_test", "bgr_normalization"]
    assert st.params["loss_sort"] == "string" and st.params["normalized_softmax"] is True
    assert train.init == "warm" and train.selection == "best-on-test"
    assert flags == [FLAG_BEST_ON_TEST]  # one spelling, once
    assert train.augment.channel_order == "bgr"
    assert train.augment.mean == [0.4914, 0.4822, 0.4465] and train.augment.std == [0.2023, 0.1994, 0.2010]


def test_paper_protocol_has_no_quirk_and_a_list_picks_some():
    st, train, quirks, flags = resolve_strategy(StrategyConfig("pt4al"), "paper", TrainConfig(), "s")
    assert quirks == [] and flags == []
    assert st.params["loss_sort"] == "numeric" and not st.params["normalized_softmax"]
    assert train.init == "fresh" and train.selection == "final"
    st, train, quirks, flags = resolve_strategy(StrategyConfig("pt4al", quirks=["string_sort"]), "official",
                                                TrainConfig(), "s")
    assert quirks == ["string_sort"] and flags == [] and train.init == "fresh"
    assert st.params["loss_sort"] == "string"


def test_ablations_carry_the_training_quirks():
    for name in ("pt4al-sampling-only", "pt4al-pretext-only"):
        _, train, quirks, flags = resolve_strategy(StrategyConfig(name), "official", TrainConfig(), "s")
        assert "warm_start" in quirks and flags == [FLAG_BEST_ON_TEST] and train.init == "warm"
        assert "bgr_normalization" in quirks and train.augment.channel_order == "bgr"


# ------------------------------------------------------------------------------------------------
# params


@pytest.mark.parametrize("params, field", [
    ({"pretext_model": "resnet99"}, "pretext_model"),
    ({"pretext_epochs": 0}, "pretext_epochs"),
    ({"pretext_task": "rotate"}, "pretext_task"),
    ({"pretext_model_params": {"depth": 3}}, "pretext_model_params.depth"),
    ({"pretext_task": "jigsaw", "pretext_options": {"grid": 7}}, "pretext_options.grid"),
    ({"pretext_options": {"bins": 4}}, "pretext_options.bins"),
    ({"batches": 0}, "batches"),
    ({"first_cycle": "uniformly"}, "first_cycle"),
])
def test_bad_params_name_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        make_strategy("pt4al", params)
    assert err.value.field == f"params.{field}"


# ------------------------------------------------------------------------------------------------
# ablations


def test_sampling_only_random_batches_random_start_entropy(tmp_path):
    s = make_strategy("pt4al-sampling-only")
    s.prepare(_ctx(tmp_path, 9, cycles=3, seed=3))
    again = make_strategy("pt4al-sampling-only")
    again.prepare(_ctx(tmp_path, 9, cycles=3, seed=3))
    batches = [b.tolist() for b in s.batches_]
    assert batches == [b.tolist() for b in again.batches_]  # a fixed function of the seed
    assert sorted(sum(batches, [])) == list(range(9)) and [len(b) for b in batches] == [3, 3, 3]
    other = make_strategy("pt4al-sampling-only")
    other.prepare(_ctx(tmp_path, 9, cycles=3, seed=4))
    assert [b.tolist() for b in other.batches_] != batches
    first = s.initial(size=2, pool=_pool(9), rng=np.random.default_rng(0))
    assert set(first.tolist()) <= set(batches[0])
    assert first.tolist() == np.random.default_rng(0).choice(np.array(batches[0]), 2, replace=False).tolist()
    pool = _pool(9, labeled=first)
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert cand.tolist() == sorted(batches[1])
    logits = np.zeros((3, 3))
    logits[:, 0] = [3.0, 0.0, 1.0]  # entropy highest for the second candidate, then the third
    got = s.select(cycle=1, budget=2, pool=pool, inputs=_inputs(cand, logits.tolist()), rng=np.random.default_rng(0))
    assert got.tolist() == [cand[1], cand[2]]


def test_pretext_only_takes_top_or_bottom_k(tmp_path, fake_pretext):
    fake_pretext["pool"] = LOSSES  # descending: 4, 7, 0, 2, 8, 5, 1, 6, 3
    hi = make_strategy("pt4al-pretext-only")
    hi.prepare(_ctx(tmp_path, 9))
    assert hi.needs == frozenset()
    first = hi.initial(size=2, pool=_pool(9), rng=np.random.default_rng(0))
    assert first.tolist() == [4, 7]
    nxt = hi.select(cycle=1, budget=3, pool=_pool(9, labeled=first), inputs=_inputs([], np.zeros((0, 3))),
                    rng=np.random.default_rng(0))
    assert nxt.tolist() == [0, 2, 8]
    lo = make_strategy("pt4al-pretext-only", {"take": "lowest"})
    lo.prepare(_ctx(tmp_path, 9))
    assert lo.initial(size=2, pool=_pool(9), rng=np.random.default_rng(0)).tolist() == [3, 6]
