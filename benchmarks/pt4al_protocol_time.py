"""Projected wall-clock of the full PT4AL paper protocol through albench on this machine's device.

The paper's CIFAR-10 protocol: a rotation pretext task on a ResNet-18 for 15 epochs over the 50k
pool, then 10 cycles of ResNet-18 training for 200 epochs on 1k, 2k, ..., 10k labels (55k labeled
images x 200 epochs), inference over one pool batch per query and a test evaluation per cycle. Its
Table 2 reports 3 h 36 min on one GPU; our goal is 20 min or less on an H100.

Running that protocol is the measurement we want, but it is long; every phase's cost is linear in
its epoch count, so this script runs the whole protocol through the harness (the PT4AL strategy,
the engine, the records) twice with short epoch counts, E and 2E main-task epochs per cycle and
P and 2P pretext epochs, on the full pool. From each phase's recorded seconds:

    train(200)   = train(2E)   + (train(2E)   - train(E))   / E x (200 - 2E)
    pretext(15)  = pretext(2P) + (pretext(2P) - pretext(P)) / P x (15 - 2P)

which cancels the per-cycle fixed costs (model creation, warm-up). Inference, selection and
evaluation do not depend on the epoch counts and are taken from the second run. The projection
and the measured training throughput (labeled images x epochs per second) go to
``results/benchmarks/pt4al_protocol_time.json``.

    python benchmarks/pt4al_protocol_time.py                  # on a GPU machine: the real projection
    python benchmarks/pt4al_protocol_time.py --per-class 20 --test-per-class 10 --model small-cnn   # CPU smoke

On a CPU the full-size run takes hours; the smoke form only checks the script.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# importing cycle_times registers its benchmark dataset (cifar10-subset-small-test)
from benchmarks.cycle_times import PHASES, timed_run  # noqa: E402

PAPER = {"epochs": 200, "pretext_epochs": 15, "cycles": 10, "minutes": 216}
GOAL_MINUTES_H100 = 20


def run_protocol(args, epochs: int, pretext_epochs: int, out: Path) -> dict:
    """Phase seconds (summed over cycles) and the labeled counts of one PT4AL run."""
    shutil.rmtree(out, ignore_errors=True)  # a fresh pretext cache: its training is what we time
    if args.per_class is None:
        dataset = {"name": "cifar10", "root": str(args.data)}
        pool = 50000
    else:
        dataset = {"name": "cifar10-subset-small-test", "root": str(args.data),
                   "params": {"per_class": args.per_class, "subsample_seed": 0,
                              "test_per_class": args.test_per_class}}
        pool = 10 * args.per_class
    k = max(1, pool // 50)
    raw = {
        "name": "pt4al-protocol-time",
        "dataset": dataset,
        "model": {"name": args.model},
        "train": {"epochs": epochs, "batch_size": 128,
                  "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
                  "schedule": {"name": "multistep"}},
        "al": {"initial": k, "budget": k, "cycles": PAPER["cycles"]},
        "strategies": [{"name": "pt4al", "params": {"pretext_model": args.model, "pretext_epochs": pretext_epochs}}],
        "executor": {"workers": 1},
        "seeds": [0], "output": str(out),
        "record": {"embeddings": 0, "test_losses": False},
    }
    phases, rows, wall = timed_run(raw, "the PT4AL run")
    return {"phases": phases, "labeled": [int(r["n_labeled"]) for r in rows], "wall_seconds": wall}


def linear(at_1: float, at_2: float, step: int, target: int, measured_at: int) -> float:
    """The value at ``target`` of the line through (measured_at - step, at_1) and (measured_at, at_2)."""
    return at_2 + (at_2 - at_1) / step * (target - measured_at)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=Path("/tmp/albench-pt4al-protocol-time"))
    p.add_argument("--json", type=Path, default=REPO / "results" / "benchmarks" / "pt4al_protocol_time.json")
    p.add_argument("--model", default="resnet18-cifar", help="main and pretext network (the paper: ResNet-18)")
    p.add_argument("--epochs", type=int, default=5, help="E: the runs train E and 2E epochs per cycle")
    p.add_argument("--pretext-epochs", type=int, default=1, help="P: the runs train P and 2P pretext epochs")
    p.add_argument("--per-class", type=int, default=None, help="a class-balanced pool of 10 x this (smoke)")
    p.add_argument("--test-per-class", type=int, default=100, help="with --per-class: test set of 10 x this")
    args = p.parse_args(argv)
    import torch

    e, pe = args.epochs, args.pretext_epochs
    short = run_protocol(args, e, pe, args.out / "short")
    long = run_protocol(args, 2 * e, 2 * pe, args.out / "long")
    a, b = short["phases"], long["phases"]
    projected = dict(b)
    projected["train"] = linear(a["train"], b["train"], e, PAPER["epochs"], 2 * e)
    projected["pretext"] = linear(a["pretext"], b["pretext"], pe, PAPER["pretext_epochs"], 2 * pe)
    total = sum(projected.values())
    trained = sum(long["labeled"])  # labeled images seen per epoch, summed over cycles
    throughput = trained * e / max(b["train"] - a["train"], 1e-9)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else (platform.processor() or "cpu")
    summary = {
        "device": device, "torch": torch.__version__, "model": args.model,
        "pool": "cifar10 (50k)" if args.per_class is None else f"cifar10 subset ({10 * args.per_class})",
        "measured": {"short": short, "long": long, "epochs": [e, 2 * e], "pretext_epochs": [pe, 2 * pe]},
        "train_images_per_s": throughput,
        "projected_seconds": projected, "projected_minutes": total / 60,
        "paper_minutes": PAPER["minutes"], "goal_minutes_h100": GOAL_MINUTES_H100,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1))
    print(f"device: {device}; model {args.model}; {summary['pool']}")
    print(f"main-task training throughput: {throughput:.0f} labeled images/s (epochs {e} vs {2 * e})")
    print("| phase | run E | run 2E | projected (200 epochs, 15 pretext epochs) |")
    print("|---|---|---|---|")
    for ph in PHASES:
        print(f"| {ph} | {a[ph]:.1f} s | {b[ph]:.1f} s | {projected[ph]:.1f} s |")
    print(f"| total | {sum(a.values()):.1f} s | {sum(b.values()):.1f} s | {total / 60:.1f} min "
          f"(paper 3 h 36 min; goal on an H100 <= {GOAL_MINUTES_H100} min) |")
    return summary


if __name__ == "__main__":
    main()
