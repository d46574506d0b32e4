"""Long prepare phases (a pretext or representation training) are visible before they start and while
they run: ``--dry-run`` warns when one is far beyond a CPU's reach, and the progress display shows
their epochs with an ETA."""

from __future__ import annotations

import re

import pytest

from albench.cli import main
from albench.config import build_config
from albench.cpu_reach import WARN_HOURS, forward_macs, pretext_costs, reach_warnings
from albench.engine.loop import execute_run
from albench.plan import make_plan
from albench.runner.local import Progress
from albench.strategies.pretext import PretextSpec
from tests.conftest import write_yaml

PT4AL = {"name": "pt4al", "params": {"pretext_model": "small-cnn", "pretext_model_params": {"width": 4},
                                     "pretext_epochs": 2, "pretext_batch_size": 256}}
TYPICLUST = {"name": "typiclust", "params": {"pretext_model": "small-cnn", "pretext_width": 4, "pretext_epochs": 3,
                                             "pretext_batch_size": 256}}


def test_pretext_and_representation_epochs_reach_the_progress_events(tiny_raw, one_torch_thread):
    tiny_raw["strategies"] = [PT4AL, TYPICLUST]
    tiny_raw["al"]["cycles"] = 1
    events: dict[str, list] = {}
    for rc in make_plan(build_config(tiny_raw)):
        seen: list[dict] = []
        assert execute_run(rc, events=seen.append).state == "complete"
        events[rc.strategy.key] = seen
    epochs = {k: [(e["phase"], e["epoch"], e["epochs"]) for e in v if e["type"] == "epoch"] for k, v in events.items()}
    # announced at 0 when the phase starts, then after every epoch, before the first cycle
    assert epochs["pt4al"] == [("pretext rotation", e, 2) for e in range(3)]
    assert epochs["typiclust"] == [("representation simclr", e, 3) for e in range(4)]
    kinds = [e["type"] for e in events["typiclust"]]
    assert kinds.index("cycle") > max(i for i, k in enumerate(kinds) if k == "epoch")
    assert all(e["run"] == "digits/typiclust/seed-0" for e in events["typiclust"] if e["type"] == "epoch")


def test_a_cached_representation_emits_no_epochs(tiny_raw, one_torch_thread):
    tiny_raw["strategies"] = [TYPICLUST, {**TYPICLUST, "name": "probcover"}]
    tiny_raw["al"]["cycles"] = 1
    plan = make_plan(build_config(tiny_raw))
    first, second = [], []
    execute_run(plan[0], events=first.append)
    execute_run(plan[1], events=second.append)  # the same SimCLR network: read from the cache
    assert [e for e in first if e["type"] == "epoch"]
    assert not [e for e in second if e["type"] == "epoch"]


def test_the_progress_display_draws_each_phase_with_an_eta(capsys):
    bar = Progress(runs=2, cycles=4, enabled=True)
    bar.event({"type": "run_start", "run": "d/typiclust/seed-0", "cycles": 2})
    for e in range(3):
        bar.event({"type": "epoch", "run": "d/typiclust/seed-0", "phase": "representation simclr", "epoch": e,
                   "epochs": 500})
    assert len(bar.phases) == 1
    bar.event({"type": "epoch", "run": "d/pt4al/seed-0", "phase": "pretext rotation", "epoch": 0, "epochs": 15})
    positions = sorted(pos for _, pos, _ in bar.phases.values())
    assert positions == [2, 3]  # one line each, below the runs and cycles bars
    bar.event({"type": "epoch", "run": "d/pt4al/seed-0", "phase": "pretext rotation", "epoch": 15, "epochs": 15})
    bar.event({"type": "cycle", "run": "d/typiclust/seed-0", "cycle": 0, "n_labeled": 20, "value": 0.5})
    assert not bar.phases  # finished, or its run moved on to the cycles
    bar.close()
    err = capsys.readouterr().err
    lines = [ln for ln in re.split(r"[\r\n]", err) if "representation simclr" in ln]
    assert any("2/500" in ln and "epoch" in ln and re.search(r"\d\d:\d\d<\d\d:\d\d", ln) for ln in lines)  # elapsed<ETA
    assert "pretext rotation of d/pt4al/seed-0: 15 epochs in" in err


def test_forward_macs_count_every_view():
    """SimCLR trains on two views of each image through the backbone and its head: twice one view's
    MACs; the backbone's convolutions and the head's linear layers are all counted."""
    one = PretextSpec(task="simclr", model="small-cnn", model_params={"width": 4}, epochs=1)
    macs = forward_macs(one, (1, 8, 8))
    # small-cnn width 4 on 8x8: conv 3x3 stages 1->4 (8x8), 4->8 (4x4), 8->16 (2x2), 16->32 (1x1)
    convs = 64 * 4 * 1 * 9 + 16 * 8 * 4 * 9 + 4 * 16 * 8 * 9 + 1 * 32 * 16 * 9
    assert macs >= 2 * convs
    assert forward_macs(PretextSpec(task="simclr", model="resnet18-cifar", epochs=1), (3, 32, 32)) > 2 * 0.5e9


def test_dry_run_warns_when_a_pretext_is_far_beyond_a_cpu(tmp_path, tiny_raw, capsys):
    # TypiClust's default: 500 epochs of SimCLR on the CIFAR ResNet-18 (the hours at "cycles 0%")
    tiny_raw["strategies"] = ["typiclust", "probcover", "random"]
    tiny_raw["device"] = "cpu"
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--dry-run"]) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("albench: warning:")]
    assert len(warnings) == 1  # one shared network, named once with both strategies
    w = warnings[0]
    assert "simclr pretext training of strategies 'typiclust', 'probcover'" in w
    assert "resnet18-cifar, 500 epochs x 1,500 pool images" in w and "params.pretext_epochs" in w
    hours = pretext_costs(build_config(tiny_raw))[0].hours
    assert hours > WARN_HOURS


@pytest.mark.parametrize("change", ["small", "cuda", "slurm-auto"])
def test_no_warning_within_reach_or_off_the_cpu(tiny_raw, change):
    tiny_raw["strategies"] = ["typiclust"]
    tiny_raw["device"] = "cpu"
    if change == "small":  # the quickstart's CPU-sized representation
        tiny_raw["strategies"] = [TYPICLUST]
    elif change == "cuda":
        tiny_raw["device"] = "cuda"
    else:
        tiny_raw["device"] = "auto"
        tiny_raw["executor"] = {"name": "slurm"}
    assert reach_warnings(build_config(tiny_raw)) == []


def test_status_shows_the_pretext_epoch_of_a_run_still_in_its_prepare_phase(tmp_path):
    from albench.status import _progress

    run_dir = tmp_path / "digits" / "typiclust" / "seed-0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("al: {cycles: 4}\n")
    lines = [f"2026-01-01 00:00:{e:02d} pretext simclr epoch {e}/500: train loss 5.1" for e in range(1, 38)]
    (run_dir / "run.log").write_text("2026-01-01 00:00:00 start\n" + "\n".join(lines) + "\n")
    assert _progress(run_dir) == "0/4 cycles, pretext simclr epoch 37/500"
    (run_dir / "run.log").write_text("2026-01-01 00:00:00 start\n")
    assert _progress(run_dir) == "0/4 cycles"
