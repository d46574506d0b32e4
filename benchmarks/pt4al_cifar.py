"""PT4AL on real CIFAR-10 with the small CNN, on the CPU: two measurements over several seeds.

1. Spearman's rho between the per-test-image rotation loss and the main-task loss on the test set
   (paper, Fig. 2: 0.79 with ResNet-18 and full training). The main-task model is trained on every
   image of the pool (``random`` with initial = pool size, one cycle), as the paper's "independently
   trained with the training set"; rho against each first-cycle model is reported too.
2. PT4AL's first-cycle accuracy against Random's (paper, Table 1: 55.20% vs 47.49% with 1,000 of
   50,000 labels, ResNet-18, 200 epochs).

Scale (CPU-sized; the defaults are what the numbers in docs/results.md used): a seeded class-balanced pool of
``--per-class`` images per class (10,000), the full 10,000-image test set, I = 10 batches of 1,000, K =
200 (the paper's K / |batch| = 1/5), rotation pretext on small-cnn (width 16) for a few epochs. One
pretext network serves every seed (the harness default ``pretext_seed: 0``), so PT4AL's selection is
the same for all seeds and only the main-task training varies, like the paper's Table 1, where
PT4AL's spread is the smaller one; ``--pretext-per-seed`` trains one per seed instead. All runs go
through the harness (records under ``--out``); the pretext losses are cached there, so a rerun
skips the training.

    nice -n 10 python benchmarks/pt4al_cifar.py            # ~1-2 h on 2 busy shared cores
    python benchmarks/pt4al_cifar.py --seeds 0 --per-class 100 --pretext-epochs 1   # smoke test

Writes ``<out>/summary.json`` and ``results/benchmarks/pt4al_cifar.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from albench.config import build_config  # noqa: E402
from albench.data.cifar import Cifar10Imbalanced  # noqa: E402
from albench.data.registry import register_dataset  # noqa: E402
from albench.engine.loop import execute_run  # noqa: E402
from albench.plan import make_plan  # noqa: E402
from albench.records import read_artifact, read_cycles  # noqa: E402
from albench.reports.stats import spearman_rho  # noqa: E402


@register_dataset
class Cifar10Subset(Cifar10Imbalanced):
    """A seeded class-balanced CIFAR-10 pool (``per_class`` images of each class); test set untouched."""

    name = "cifar10-subset"
    description = "CIFAR-10 with a seeded class-balanced train pool of per_class images per class"
    params = {"per_class": 1000, "subsample_seed": 0}

    def check(self, cfg, path: str) -> None:
        super(Cifar10Imbalanced, self).check(cfg, path)

    def param(self, cfg, key: str):
        if key == "counts":
            return [int(cfg.params.get("per_class", self.params["per_class"]))] * 10
        return super().param(cfg, key)


def _sweep(name: str, args, *, strategies: list, al: dict, train: dict, width: int) -> list:
    raw = {
        "name": name,
        "dataset": {"name": "cifar10-subset", "root": str(args.data),
                    "params": {"per_class": args.per_class, "subsample_seed": 0}},
        "model": {"name": "small-cnn", "params": {"width": width}},
        "train": train,
        "al": al,
        "strategies": strategies,
        "seeds": list(args.seeds),
        "threads": args.threads,
        "output": str(args.out),
        "record": {"embeddings": 0, "test_losses": True},
    }
    return make_plan(build_config(raw))


def _run_all(runs: list) -> None:
    for rc in runs:
        t0 = time.perf_counter()
        out = execute_run(rc)
        if out.state == "failed":
            raise SystemExit(f"{rc.run_id} failed: {out.error}")
        print(f"  {rc.sweep}/{rc.run_id}: {out.state} in {time.perf_counter() - t0:.0f}s", flush=True)


def _mean_std(xs: list[float]) -> dict:
    a = np.asarray(xs, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": a.tolist()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder with cifar10.npz")
    p.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "pt4al-cifar")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=1000, help="pool images per class (pool = 10 x this)")
    p.add_argument("--batches", type=int, default=10, help="PT4AL's I")
    p.add_argument("--k", type=int, default=None, help="first-cycle labels (default: pool / batches / 5)")
    p.add_argument("--pretext-epochs", type=int, default=4)
    p.add_argument("--pretext-width", type=int, default=16)
    p.add_argument("--width", type=int, default=16, help="small-cnn width of the main task")
    p.add_argument("--epochs", type=int, default=50, help="main-task epochs of the first cycle")
    p.add_argument("--full-epochs", type=int, default=6, help="main-task epochs of the full-pool model")
    p.add_argument("--pretext-per-seed", action="store_true", help="train a pretext network per seed")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    pool = 10 * args.per_class
    k = args.k or max(1, pool // args.batches // 5)
    started = time.time()

    pt4al = {"name": "pt4al", "params": {
        "batches": args.batches, "pretext_model": "small-cnn", "pretext_model_params": {"width": args.pretext_width},
        "pretext_epochs": args.pretext_epochs, "pretext_batch_size": 256, "pretext_selection": "final",
        "pretext_seed": None if args.pretext_per_seed else 0}}
    opt = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    first = _sweep("first-cycle", args, strategies=[pt4al, "random"], al={"initial": k, "budget": k, "cycles": 1},
                   train={"epochs": args.epochs, "batch_size": 64, "optimizer": opt, "schedule": {"name": "cosine"}},
                   width=args.width)
    full = _sweep("full-pool", args, strategies=["random"], al={"initial": pool, "budget": 1, "cycles": 1},
                  train={"epochs": args.full_epochs, "batch_size": 128, "optimizer": opt,
                         "schedule": {"name": "cosine"}}, width=args.width)
    print(f"PT4AL on CIFAR-10: pool {pool} ({args.per_class}/class), I={args.batches}, K={k}, seeds {args.seeds}",
          flush=True)
    _run_all(first)
    _run_all(full)

    by = {(rc.sweep, rc.strategy.key, rc.seed): rc.run_dir for rc in first + full}
    per_seed = []
    for s in args.seeds:
        pt_dir, rnd_dir, full_dir = by[("first-cycle", "pt4al", s)], by[("first-cycle", "random", s)], \
            by[("full-pool", "random", s)]
        pre = read_artifact(pt_dir, "pretext_loss_test")
        prep = json.loads((pt_dir / "run.json").read_text())["prepare"]
        per_seed.append({
            "seed": s,
            "rho_full": spearman_rho(pre, read_artifact(full_dir, "test_loss")[0]),
            "rho_first_pt4al": spearman_rho(pre, read_artifact(pt_dir, "test_loss")[0]),
            "rho_first_random": spearman_rho(pre, read_artifact(rnd_dir, "test_loss")[0]),
            "acc_pt4al": read_cycles(pt_dir)[0]["value"],
            "acc_random": read_cycles(rnd_dir)[0]["value"],
            "acc_full": read_cycles(full_dir)[0]["value"],
            "pretext_rotation_accuracy": prep.get("pretext_pool_score"),
            "pretext_train_seconds": prep.get("pretext_train_seconds"),
        })
    summary = {
        "scale": {"pool": pool, "per_class": args.per_class, "test": 10000, "batches": args.batches, "k": k,
                  "pretext": f"rotation, small-cnn width {args.pretext_width}, {args.pretext_epochs} epochs, "
                             "batch 256, SGD 0.1/0.9/5e-4, final epoch, "
                             + ("one pretext network per seed" if args.pretext_per_seed
                                else "one pretext network (seed 0) shared by the seeds"),
                  "main": f"small-cnn width {args.width}; first cycle {args.epochs} epochs batch 64, full pool "
                          f"{args.full_epochs} epochs batch 128; SGD lr 0.05 cosine, crop+flip"},
        "seeds": args.seeds,
        "rho_full": _mean_std([r["rho_full"] for r in per_seed]),
        "rho_first_pt4al": _mean_std([r["rho_first_pt4al"] for r in per_seed]),
        "rho_first_random": _mean_std([r["rho_first_random"] for r in per_seed]),
        "acc_pt4al": _mean_std([r["acc_pt4al"] for r in per_seed]),
        "acc_random": _mean_std([r["acc_random"] for r in per_seed]),
        "acc_full": _mean_std([r["acc_full"] for r in per_seed]),
        "acc_diff": _mean_std([r["acc_pt4al"] - r["acc_random"] for r in per_seed]),
        "per_seed": per_seed,
        "command": "python benchmarks/pt4al_cifar.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()
                    or platform.machine(), "threads": args.threads},
        "wall_seconds": round(time.time() - started, 1),
    }
    text = json.dumps(summary, indent=1)
    (args.out / "summary.json").write_text(text + "\n")
    bench_json = REPO / "results" / "benchmarks" / "pt4al_cifar.json"
    bench_json.parent.mkdir(parents=True, exist_ok=True)
    bench_json.write_text(text + "\n")

    def f(d, pct=False):
        m = 100 if pct else 1
        return f"{d['mean'] * m:.{1 if pct else 3}f} ± {d['std'] * m:.{1 if pct else 3}f}"

    print(f"\n| measurement ({len(args.seeds)} seeds, mean ± std) | value |\n|---|---|")
    print(f"| Spearman rho, rotation loss vs full-pool model's test loss | {f(summary['rho_full'])} |")
    print(f"| Spearman rho, rotation loss vs first-cycle PT4AL model | {f(summary['rho_first_pt4al'])} |")
    print(f"| Spearman rho, rotation loss vs first-cycle Random model | {f(summary['rho_first_random'])} |")
    print(f"| first-cycle accuracy, PT4AL ({k} labels) | {f(summary['acc_pt4al'], True)} % |")
    print(f"| first-cycle accuracy, Random ({k} labels) | {f(summary['acc_random'], True)} % |")
    print(f"| PT4AL - Random (paired by seed) | {f(summary['acc_diff'], True)} points |")
    print(f"| full-pool accuracy ({pool} labels) | {f(summary['acc_full'], True)} % |")
    print(f"\nwall-clock {summary['wall_seconds'] / 60:.1f} min; records under {args.out}")
    return summary


if __name__ == "__main__":
    main()
