"""One rule for every cached artifact (albench.cached): each run records the entry's compute time and
whether it computed or reused it; reports charge every run that compute time and show the incurred
time beside it. The end-to-end test runs two strategies that share one SimCLR representation, in both
orders, and checks that the records and the wall-clock table agree."""

from __future__ import annotations

import copy
import json
import threading
import time

import numpy as np
import pytest

from albench.cached import (CacheUse, Entry, charged_seconds, collect_uses, legacy_uses, load_or_compute,
                            note_use)
from albench.config import build_config
from albench.plan import make_plan
from albench.reports import tables as T
from albench.reports.data import load_sweep_runs
from tests.report_synth import write_run


def _use(status, secs=100.0, wait=0.0, origin="", artifact="representation", key="k"):
    return CacheUse(artifact, key, status, secs, wait, origin)


# ------------------------------------------------------------------------------------------------
# the charge


def test_a_hit_is_charged_the_entry_compute_time_and_a_miss_its_own_clock():
    assert charged_seconds(100.4, [_use("miss")]) == (100.4, False)
    assert charged_seconds(0.4, [_use("hit")]) == (100.4, True)
    assert charged_seconds(0.4, [_use("off")]) == (0.4, False)
    assert charged_seconds(0.4, []) == (0.4, False)


def test_a_wait_for_another_run_is_replaced_by_the_compute_time():
    # waited 80 s for the run computing the entry, then read it in 0.5 s: charged 0.5 + 100, not 180.5
    assert charged_seconds(80.5, [_use("hit", wait=80.0)]) == (100.5, True)
    # a use recorded without its wait (older records): the larger of the two, never their sum
    assert charged_seconds(0.5, [_use("hit", wait=None)]) == (100.0, True)
    assert charged_seconds(120.0, [_use("hit", wait=None)]) == (120.0, True)


def test_one_computation_is_charged_once_per_run():
    # the features entry and the loss entry its training wrote alongside: one origin, charged once
    a = _use("hit", 100.0, origin="feat", artifact="representation", key="feat")
    b = _use("hit", 100.0, origin="feat", artifact="pretext-losses", key="loss")
    assert charged_seconds(1.0, [a, b]) == (101.0, True)
    # computed here (miss) and read again: its time is already in the run's clock
    assert charged_seconds(90.0, [_use("miss", 88.0, origin="feat", key="feat"),
                                  _use("hit", 88.0, origin="feat", key="loss")]) == (90.0, False)
    # two different entries read: both charged
    assert charged_seconds(1.0, [_use("hit", 10.0, key="a"), _use("hit", 20.0, key="b")]) == (31.0, True)


def test_records_round_trip_and_legacy_prepare_fields_read_as_uses():
    u = CacheUse("representation", "abc", "hit", 12.34567, 0.5, phase="pretext")
    assert u.origin == "abc" and CacheUse.from_record(u.to_record()) == CacheUse("representation", "abc", "hit", 12.346,
                                                                                0.5)
    with pytest.raises(ValueError):
        CacheUse("x", "k", "maybe", 1.0)
    with pytest.raises(ValueError):
        CacheUse.from_record({"artifact": "x"})
    uses = legacy_uses({"pretext_cache": "miss", "pretext_key": "p", "pretext_train_seconds": 3.0,
                        "pretext_wait_seconds": 0.0, "representation_cache": "hit", "representation_key": "r",
                        "representation_train_seconds": 117.0})
    assert [(u.artifact, u.key, u.status, u.compute_seconds, u.wait_seconds) for u in uses] == [
        ("pretext-losses", "p", "miss", 3.0, 0.0), ("representation", "r", "hit", 117.0, None)]


# ------------------------------------------------------------------------------------------------
# load_or_compute and the collector


class _DictCache:
    """A cache kept in a dict, with the load / compute / store callables load_or_compute takes."""

    def __init__(self, secs: float = 7.0) -> None:
        self.entries: dict[str, Entry] = {}
        self.computed = 0
        self.secs = secs

    def call(self, key, lock_dir, **kw):
        def compute():
            self.computed += 1
            return Entry(f"value-{key}", self.secs)

        return load_or_compute("toy", key, lock_dir=lock_dir, load=lambda: self.entries.get(key), compute=compute,
                               store=lambda e: self.entries.__setitem__(key, e), log=lambda m: None, **kw)


def test_load_or_compute_reports_miss_hit_and_off_to_the_open_collector(tmp_path):
    cache = _DictCache()
    with collect_uses("pretext") as uses:
        e1, u1 = cache.call("a", tmp_path)
        e2, u2 = cache.call("a", tmp_path)
        e3, u3 = cache.call("b", None)
    assert (e1.value, e2.value, e3.value) == ("value-a", "value-a", "value-b") and cache.computed == 2
    assert [(u.status, u.compute_seconds, u.phase) for u in uses] == [("miss", 7.0, "pretext"), ("hit", 7.0, "pretext"),
                                                                      ("off", 7.0, "pretext")]
    assert (u1, u2, u3) == tuple(uses)
    assert "b" not in cache.entries  # no cache folder: nothing stored
    _, outside = cache.call("a", tmp_path)  # no collector open: returned, recorded nowhere
    assert outside.status == "hit" and len(uses) == 3
    with collect_uses("select") as later:
        note_use(CacheUse("other", "k", "hit", 1.0))
    assert later[0].phase == "select"


def test_a_run_waiting_for_the_computing_run_reads_its_entry_and_records_the_wait(tmp_path):
    cache = _DictCache()
    started = threading.Event()

    def slow_compute():
        started.set()
        time.sleep(0.6)
        return Entry("slow", 5.0)

    def first():
        load_or_compute("toy", "k", lock_dir=tmp_path, load=lambda: cache.entries.get("k"), compute=slow_compute,
                        store=lambda e: cache.entries.__setitem__("k", e), log=lambda m: None)

    t = threading.Thread(target=first)
    t.start()
    started.wait(5)
    entry, use = load_or_compute("toy", "k", lock_dir=tmp_path, load=lambda: cache.entries.get("k"),
                                 compute=lambda: pytest.fail("computed while another run held the lock"),
                                 store=lambda e: None, log=lambda m: None)
    t.join()
    assert entry.value == "slow" and use.status == "hit" and use.compute_seconds == 5.0 and use.wait_seconds > 0.2
    assert not (tmp_path / "k.lock").exists()


# ------------------------------------------------------------------------------------------------
# reports


def test_wallclock_table_shows_charged_and_incurred_and_says_which(tmp_path):
    common = dict(sweep="s", dataset="toy", values=[0.5, 0.6])
    write_run(tmp_path, strategy="random", seed=0, seconds={"train": [1, 1]}, **common)
    uses = {"miss": [CacheUse("representation", "r", "miss", 50.0).to_record()],
            "hit": [CacheUse("representation", "r", "hit", 50.0, 0.0).to_record()]}
    write_run(tmp_path, strategy="typiclust", seed=0, seconds={"pretext": [50.5, 0], "train": [1, 1]},
              identity={"cache_uses": uses["miss"]}, **common)
    write_run(tmp_path, strategy="probcover", seed=0, seconds={"pretext": [0.5, 0], "train": [1, 1]},
              identity={"cache_uses": uses["hit"]}, **common)
    df = load_sweep_runs(tmp_path / "s").cycles("toy")
    t = T.wallclock_table(df, caption="cap", flagged=set(), name="wc")
    assert t.display.loc["typiclust", "pretext"] == T.fmt_duration(50.5)
    assert t.display.loc["probcover", "pretext"] == T.fmt_duration(50.5)  # charged: 0.5 read + 50 computed elsewhere
    assert t.display.loc["probcover", "incurred"] == T.fmt_duration(2.5)
    assert t.display.loc["typiclust", "incurred"] == T.fmt_duration(52.5)
    note = next(n for n in t.notes if n.startswith("Charged time:"))
    assert "probcover, typiclust" in note and "(representation)" in note and "probcover 1 of 1" in note
    assert "typiclust 1 of 1" not in note


# ------------------------------------------------------------------------------------------------
# two strategies sharing one representation, in both orders

TINY_SIMCLR = {"pretext_model": "small-cnn", "pretext_width": 4, "pretext_epochs": 1, "pretext_batch_size": 256}


def _run_in_order(root, order):
    from albench.engine.loop import execute_run

    strategies = {"typiclust": {"name": "typiclust", "params": copy.deepcopy(TINY_SIMCLR)},
                  "probcover": {"name": "probcover", "params": {**TINY_SIMCLR, "delta": 0.3}}}
    raw = {"name": "share", "dataset": {"name": "digits"}, "model": {"name": "small-cnn", "params": {"width": 4}},
           "train": {"epochs": 1, "batch_size": 64, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
           "al": {"initial": 10, "budget": 10, "cycles": 1}, "seeds": [0], "threads": 1,
           "record": {"embeddings": 0}, "output": str(root), "strategies": [strategies[n] for n in order]}
    for rc in make_plan(build_config(raw)):
        assert execute_run(rc).state == "complete"
    sweep = load_sweep_runs(root / "share")
    return {r.label: r for r in sweep.runs}, sweep.cycles("digits")


@pytest.mark.slow
@pytest.mark.parametrize("order", [("typiclust", "probcover"), ("probcover", "typiclust")],
                         ids=["typiclust-first", "probcover-first"])
def test_a_shared_representation_is_charged_to_both_runs_in_either_order(tmp_path, one_torch_thread, order):
    runs, df = _run_in_order(tmp_path, order)
    first, second = (runs[n] for n in order)
    u1, u2 = first.cache_uses, second.cache_uses
    assert [(u.artifact, u.status, u.phase) for u in u1] == [("representation", "miss", "pretext")]
    assert [(u.artifact, u.status, u.phase) for u in u2] == [("representation", "hit", "pretext")]
    # one entry, one compute time, in both records and in the entry itself
    assert u1[0].key == u2[0].key and u1[0].compute_seconds == u2[0].compute_seconds > 0
    entry = json.loads((tmp_path / ".cache" / "pretext" / f"{u1[0].key}.json").read_text())
    assert round(entry["train_seconds"], 3) == u1[0].compute_seconds
    # the strategy's own prepare record agrees with the use the engine recorded
    assert [r.prepare["representation_cache"] for r in (first, second)] == ["miss", "hit"]
    assert second.prepare["representation_train_seconds"] == u2[0].compute_seconds

    per_run = T.run_seconds(df).set_index("series")
    for run, use in ((first, u1[0]), (second, u2[0])):
        incurred = float(run.rows[0]["seconds_pretext"])
        # every use's wait comes off, a miss's too (its lock acquisition, ~1 ms on a loaded machine);
        # only a read entry adds its compute time
        want = max(0.0, incurred - use.wait_seconds) + (use.compute_seconds if use.status == "hit" else 0.0)
        assert per_run.loc[run.label, "pretext"] == pytest.approx(want)
        assert per_run.loc[run.label, "pretext"] >= use.compute_seconds  # whoever came first pays the training
        assert per_run.loc[run.label, "incurred"] == pytest.approx(sum(float(r["seconds_total"]) for r in run.rows))
    assert bool(per_run.loc[second.label, "cache_reused"]) and not bool(per_run.loc[first.label, "cache_reused"])

    t = T.wallclock_table(df, caption="cap", flagged=set(), name="wc")
    note = next(n for n in t.notes if n.startswith("Charged time:"))
    assert "probcover, typiclust" in note and "(representation)" in note
    assert f"{second.label} 1 of 1" in note and f"{first.label} 1 of 1" not in note
    assert "incurred" in t.display.columns
