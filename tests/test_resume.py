"""Resume from a checkpoint ends equal to an uninterrupted run (in-process crash points).

A crash is simulated by raising a BaseException right after the engine wrote a given file, so it
lands at an exact point (after the k-th checkpoint, after cycles.csv, after the artifacts); the
SIGKILL tests in test_resume_sigkill.py do the same with a real killed process.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from albench.config import build_config
from albench.engine.loop import execute_run
from albench.plan import make_plan
from albench.records import RunRecorder, read_artifact, read_cycles

# columns that must match bit for bit on CPU (the seconds_* columns are wall times)
SAME = ("cycle", "n_labeled", "metric", "value", "test_loss", "epochs", "selected_epoch")


BASE = {  # a ~1 s digits run; threads: 1 so that CPU numbers are bit-reproducible
    "name": "resume",
    "dataset": {"name": "digits"},
    "model": {"name": "small-cnn", "params": {"width": 8}},
    "train": {"epochs": 3, "batch_size": 32, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 3},
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 64},
}


class Crash(BaseException):
    """Stands in for SIGKILL: not an Exception, so the engine does not record a failure."""


def _plan(raw: dict, out) -> list:
    raw = copy.deepcopy(raw)
    raw["output"] = str(out)
    return make_plan(build_config(raw))


def _final(run_dir) -> dict:
    return {
        "queries": json.loads((run_dir / "queries.json").read_text()),
        "rows": [{k: r[k] for k in SAME} for r in read_cycles(run_dir)],
        "labeled_targets": read_artifact(run_dir, "labeled_targets"),
        "test_loss": read_artifact(run_dir, "test_loss"),
        "embeddings": read_artifact(run_dir, "embeddings"),
    }


def _assert_same(got: dict, want: dict) -> None:
    assert got["queries"] == want["queries"]
    assert got["rows"] == want["rows"]
    for key in ("labeled_targets", "test_loss", "embeddings"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _crash_after(monkeypatch, method: str, n: int) -> dict:
    """Make ``RunRecorder.<method>`` raise Crash right after its n-th call (1-based) completes."""
    orig = getattr(RunRecorder, method)
    calls = {"n": 0}

    def wrapped(self, *args, **kwargs):
        out = orig(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(f"{method} #{n}")
        return out

    monkeypatch.setattr(RunRecorder, method, wrapped)
    return calls


# Two protocols: fresh init with a model-based strategy; warm start with best-on-validation carved
# from the labeled set (the trainer's best-so-far state and the validation split must survive).
CONFIGS = {
    "fresh-margin": {"strategies": ["margin"], "train": {"checkpoint_every": 1, "epochs": 3}},
    "warm-best-entropy": {
        "strategies": ["entropy"],
        "train": {"checkpoint_every": 1, "epochs": 3, "init": "warm", "selection": "best-on-validation",
                  "validation": {"source": "labeled", "size": 0.25},
                  "schedule": {"name": "multistep", "milestones": [2], "gamma": 0.1}},
    },
    # min_steps 4 stretches cycle 0 (20 labels: one step an epoch) to 4 epochs, its lr drop to epoch 3
    "min-steps-margin": {"strategies": ["margin"],
                         "train": {"checkpoint_every": 1, "epochs": 2, "min_steps": 4,
                                   "schedule": {"name": "multistep", "gamma": 0.1}}},
}


def _raw(name: str) -> dict:
    raw = copy.deepcopy(BASE)
    extra = copy.deepcopy(CONFIGS[name])
    raw["train"].update(extra.pop("train"))
    raw.update(extra)
    return raw


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Uninterrupted run folder per config."""
    out = {}
    for name in CONFIGS:
        (rc,) = _plan(_raw(name), tmp_path_factory.mktemp(name))
        assert execute_run(rc).state == "complete"
        out[name] = rc.run_dir
    return out


# cycles=3, epochs=3, checkpoint_every=1: per cycle two in-training checkpoints (after epochs 1 and
# 2) and one at the cycle boundary, so checkpoint #3 is the end of cycle 0, #9 the end of cycle 2.
POINTS = [
    ("fresh-margin", "save_checkpoint", 1),  # mid-training of cycle 0
    ("fresh-margin", "save_checkpoint", 3),  # cycle-0 boundary, before cycles.csv is written
    ("fresh-margin", "write_cycles", 1),  # cycle 0 recorded, cycle 1 not started
    ("fresh-margin", "save_checkpoint", 5),  # mid-training of cycle 1
    ("fresh-margin", "save_checkpoint", 9),  # last boundary: the last row is only in the checkpoint
    ("fresh-margin", "write_cycles", 3),  # every cycle recorded, artifacts not written
    ("fresh-margin", "save_artifacts", 1),  # artifacts written, run not marked complete
    ("warm-best-entropy", "save_checkpoint", 2),  # mid-training: best-so-far weights in the trainer state
    ("warm-best-entropy", "save_checkpoint", 6),  # boundary: the warm start comes from the checkpoint
    ("warm-best-entropy", "save_checkpoint", 8),
    ("min-steps-margin", "save_checkpoint", 2),  # epoch 2 of the stretched cycle 0, before its lr drop
    ("min-steps-margin", "save_checkpoint", 3),  # epoch 3 of 4: past train.epochs, after the drop
]


@pytest.mark.parametrize("config,method,n", POINTS, ids=[f"{c}-{m}-{n}" for c, m, n in POINTS])
def test_resume_after_crash_equals_uninterrupted(tmp_path, monkeypatch, baselines, config, method, n):
    (rc,) = _plan(_raw(config), tmp_path / "out")
    calls = _crash_after(monkeypatch, method, n)
    with pytest.raises(Crash):
        execute_run(rc)
    assert calls["n"] == n
    status = RunRecorder(rc.run_dir).status()
    assert status["state"] == "running"  # a crash is not a recorded failure: the rerun resumes
    monkeypatch.undo()

    outcome = execute_run(rc)
    assert outcome.state == "complete", outcome.error
    status = RunRecorder(rc.run_dir).status()
    assert status["state"] == "complete" and status["resumes"] == 1
    assert not (rc.run_dir / "checkpoint.pt").exists()
    assert "resume digits/" in (rc.run_dir / "run.log").read_text()
    _assert_same(_final(rc.run_dir), _final(baselines[config]))


def test_min_steps_config_stretches_cycle_0(baselines):
    """The min-steps resume points above land inside a stretched cycle: 4, 2 and 2 epochs."""
    assert [r["epochs"] for r in read_cycles(baselines["min-steps-margin"])] == [4, 2, 2]


def test_resume_twice_in_one_cycle(tmp_path, monkeypatch, baselines):
    """Crash mid-training, resume, crash again one epoch later, resume: still the same run."""
    (rc,) = _plan(_raw("fresh-margin"), tmp_path / "out")
    _crash_after(monkeypatch, "save_checkpoint", 4)  # after epoch 1 of cycle 1
    with pytest.raises(Crash):
        execute_run(rc)
    monkeypatch.undo()
    _crash_after(monkeypatch, "save_checkpoint", 1)  # the resumed run's first write: epoch 2 of cycle 1
    with pytest.raises(Crash):
        execute_run(rc)
    monkeypatch.undo()
    assert execute_run(rc).state == "complete"
    assert RunRecorder(rc.run_dir).status()["resumes"] == 2
    _assert_same(_final(rc.run_dir), _final(baselines["fresh-margin"]))


def test_checkpoint_loads_with_weights_only_and_holds_the_run_state(tmp_path, monkeypatch):
    import torch

    (rc,) = _plan(_raw("fresh-margin"), tmp_path / "out")
    _crash_after(monkeypatch, "save_checkpoint", 5)  # after epoch 2 of cycle 1
    with pytest.raises(Crash):
        execute_run(rc)
    state = torch.load(rc.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["next_cycle"] == 1
    assert len(state["rows"]) == 1 and list(state["queries"]) == ["0"]
    partial = state["partial"]
    assert partial["cycle"] == 1 and partial["trainer"]["epoch"] == 2
    assert len(partial["labeled"]) == 40  # initial 20 + budget 20
    trainer = partial["trainer"]
    assert {"model", "opt", "order_gen", "aug_gen"} <= set(trainer)
    assert trainer["opt"]["state"], "SGD momentum buffers must be saved"


def test_complete_run_is_skipped_and_not_rewritten(tmp_path):
    (rc,) = _plan(_raw("fresh-margin"), tmp_path / "out")
    assert execute_run(rc).state == "complete"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in rc.run_dir.rglob("*") if p.is_file()}
    assert execute_run(rc).state == "skipped"
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in rc.run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_trainer_state_restores_the_global_rng_for_dropout():
    """A model with dropout draws from torch's global RNG; resuming between epochs must not change it."""
    import torch
    from torch import nn

    from albench.config import TrainConfig
    from albench.data.augment import BatchTransform
    from albench.engine.train import Trainer
    from albench.tasks import make_task
    from albench.toolkit.seeding import torch_generator
    from albench.models.base import ModelOutput

    class DropNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 3)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            emb = self.drop(x.flatten(1))
            return ModelOutput(self.fc(emb), emb, (x,))

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (24, 1, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 3, (24,), generator=gen)
    cfg = TrainConfig(epochs=2, batch_size=8)

    def trainer():
        torch.manual_seed(1)
        return Trainer(model=DropNet(), aux=None, task=make_task("classification", 3),
                       transform=BatchTransform([0.5], [0.25]), cfg=cfg, device=torch.device("cpu"), amp=False,
                       order_gen=torch_generator(0, "order"), aug_gen=torch_generator(0, "augment"))

    straight = trainer()
    straight.fit(x, y)

    first = trainer()
    first.train_epoch(x, y)
    saved = first.state()
    torch.manual_seed(12345)  # a new process starts with some other global RNG state
    resumed = trainer()
    resumed.load_state(saved)
    resumed.fit(x, y)
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_resumed_cycle_records_the_whole_phase_time(tmp_path, monkeypatch):
    """A cycle stopped mid-training carries its train seconds so far in the checkpoint, and the resumed
    cycle's seconds_train adds the time after the resume to them (issue 16, Slurm/resume item 3)."""
    import torch

    (rc,) = _plan(_raw("fresh-margin"), tmp_path / "out")
    _crash_after(monkeypatch, "save_checkpoint", 5)  # after epoch 2 of cycle 1's 3 epochs
    with pytest.raises(Crash):
        execute_run(rc)
    monkeypatch.undo()
    partial = torch.load(rc.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["partial"]
    stored = partial["seconds"]
    assert stored["train"] > 0, "the checkpoint must hold the two epochs of training already done"
    assert stored["select"] > 0 and stored["evaluate"] == 0  # finished phases as before, evaluate not begun
    assert execute_run(rc).state == "complete"
    row = read_cycles(rc.run_dir)[1]
    assert float(row["seconds_train"]) >= stored["train"]  # before the crash + after the resume
    assert float(row["seconds_select"]) == pytest.approx(stored["select"], abs=1e-4)  # not redone, not lost


def test_phase_timer_counts_an_open_phase_so_far(monkeypatch):
    from albench.engine import timer as timer_mod

    clock = iter([10.0, 12.5, 13.0, 14.0])  # enter train, so_far, leave train, (unused)
    monkeypatch.setattr(timer_mod, "time", type("FakeTime", (), {"perf_counter": staticmethod(lambda: next(clock))}))
    t = timer_mod.PhaseTimer()
    with t.phase("train"):
        assert t.so_far()["train"] == 2.5 and t.seconds["train"] == 0.0
    assert t.seconds["train"] == 3.0 and t.so_far()["train"] == 3.0
