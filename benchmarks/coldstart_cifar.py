"""Cold start on real CIFAR-10 with the small CNN, on the CPU: first-cycle accuracy of the cold-start
specialists against Random and PT4AL (issue 15).

Five series over several seeds, one cycle each (al.cycles = 1, so the recorded accuracy is the model
trained on the first query alone): ``random``, ``pt4al`` (rotation pretext, batch 0 uniform),
``typiclust``, ``probcover`` (both on one SimCLR representation) and ``pt4al-typiclust`` (PT4AL with
``first_cycle_strategy: typiclust`` on that same representation). Besides the accuracy it reports the
class counts of each first query (the first ``K`` entries of each run's ``labeled_targets``).

Scale (CPU-sized; the defaults are what the numbers in docs/results.md used): the seeded class-balanced pool of
``benchmarks/pt4al_cifar.py`` (``cifar10-subset``, imported, not copied) with ``--per-class`` images per
class, the full 10,000-image test set, K = ``--k`` first labels, main task small-cnn (width 16) for
``--epochs`` epochs; rotation pretext small-cnn width 16 for ``--pretext-epochs`` epochs; SimCLR
small-cnn width 16 for ``--simclr-epochs`` epochs. Each pretext network is trained once (seed 0) and
cached under ``<out>/.cache``, shared by every seed (the harness default ``pretext_seed: 0``); the seeds
vary the main-task training and each strategy's ``rng`` (Random's draw, TypiClust's k-means, the
k-means of ProbCover's purity rule), so PT4AL's first query (uniform over batch 0) is the same for
every seed and the others' differ. With one cycle, ``pt4al-typiclust``'s query is TypiClust's (same
representation, same ``rng``); the two differ only from cycle 1 on. All runs go through the harness
(records under ``--out``; ``albench report <out>/coldstart`` tabulates them).

    nice -n 5 python benchmarks/coldstart_cifar.py     # ~15-20 min on 2 busy shared cores
    python benchmarks/coldstart_cifar.py --seeds 0 --per-class 20 --k 20 --epochs 1 \\
        --pretext-epochs 1 --simclr-epochs 1 --out /tmp/coldstart-smoke   # smoke test

Writes ``<out>/summary.json`` and ``results/benchmarks/coldstart_cifar.json`` and prints Markdown tables.
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
sys.path.insert(0, str(REPO / "benchmarks"))

from pt4al_cifar import _mean_std, _run_all, _sweep  # noqa: E402  (the import registers the ``cifar10-subset`` pool)
from albench.records import read_artifact, read_cycles  # noqa: E402

SERIES = ("random", "pt4al", "typiclust", "probcover", "pt4al-typiclust")


def strategies(args) -> list:
    """The five strategy entries of the sweep (labels as in :data:`SERIES`)."""
    simclr = {"pretext_model": "small-cnn", "pretext_width": args.pretext_width,
              "pretext_epochs": args.simclr_epochs, "pretext_batch_size": args.simclr_batch_size}
    rotation = {"pretext_model": "small-cnn", "pretext_model_params": {"width": args.pretext_width},
                "pretext_epochs": args.pretext_epochs, "pretext_batch_size": 256, "pretext_selection": "final",
                "batches": args.batches}
    probcover = dict(simclr, **({"delta": args.delta} if args.delta is not None else {}))
    return ["random",
            {"name": "pt4al", "params": rotation},
            {"name": "typiclust", "params": simclr},
            {"name": "probcover", "params": probcover},
            {"name": "pt4al", "label": "pt4al-typiclust",
             "params": dict(rotation, first_cycle_strategy={"name": "typiclust", "params": simclr})}]


def plan(args) -> list:
    """The sweep's runs (one cycle, ``args.k`` initial labels; built by pt4al_cifar's ``_sweep``)."""
    train = {"epochs": args.epochs, "batch_size": 64,
             "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
             "schedule": {"name": "cosine"}}
    return _sweep("coldstart", args, strategies=strategies(args), al={"initial": args.k, "budget": args.k, "cycles": 1},
                  train=train, width=args.width)


def first_query_counts(run_dir: Path, k: int, n_classes: int = 10) -> list[int]:
    """Per-class image counts of the run's cold-start query (the first ``k`` labeled targets)."""
    t = read_artifact(run_dir, "labeled_targets")
    if t is None or len(t) < k:
        raise SystemExit(f"{run_dir}: labeled_targets missing or shorter than K={k}")
    return np.bincount(np.asarray(t[:k], dtype=np.int64), minlength=n_classes).tolist()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder with cifar10.npz")
    p.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "coldstart-cifar")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=200, help="pool images per class (pool = 10 x this)")
    p.add_argument("--k", type=int, default=100, help="first-query labels (al.initial)")
    p.add_argument("--batches", type=int, default=10, help="PT4AL's I")
    p.add_argument("--width", type=int, default=16, help="small-cnn width of the main task")
    p.add_argument("--epochs", type=int, default=30, help="main-task epochs")
    p.add_argument("--pretext-width", type=int, default=16, help="small-cnn width of both pretext networks")
    p.add_argument("--pretext-epochs", type=int, default=4, help="rotation pretext epochs (PT4AL)")
    p.add_argument("--simclr-epochs", type=int, default=15, help="SimCLR epochs (TypiClust, ProbCover)")
    p.add_argument("--simclr-batch-size", type=int, default=256)
    p.add_argument("--delta", type=float, default=None, help="ProbCover's fixed delta (default: purity rule)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    started = time.time()
    runs = plan(args)
    print(f"cold start on CIFAR-10: pool {10 * args.per_class} ({args.per_class}/class), K={args.k}, "
          f"seeds {args.seeds}, {len(runs)} runs", flush=True)
    _run_all(runs)

    per_series: dict[str, dict] = {}
    for label in SERIES:
        mine = [rc for rc in runs if rc.strategy.key == label]
        accs, counts, prep = [], [], []
        for rc in sorted(mine, key=lambda r: r.seed):
            accs.append(read_cycles(rc.run_dir)[0]["value"])
            counts.append(first_query_counts(rc.run_dir, args.k))
            prep.append(json.loads((rc.run_dir / "run.json").read_text()).get("prepare") or {})
        c = np.asarray(counts)
        per_series[label] = {
            "accuracy": _mean_std(accs), "class_counts": counts,
            "class_counts_mean": c.mean(axis=0).round(2).tolist(),
            "min_class": int(c.min()), "max_class": int(c.max()),
            "classes_missed_mean": float((c == 0).sum(axis=1).mean()),
            "prepare": {k: v for k, v in prep[0].items() if isinstance(v, (int, float, str, bool)) or v is None},
        }
    summary = {
        "scale": {"pool": 10 * args.per_class, "per_class": args.per_class, "test": 10000, "k": args.k,
                  "cycles": 1, "batches": args.batches,
                  "main": f"small-cnn width {args.width}, {args.epochs} epochs, batch 64, SGD lr 0.05/0.9/5e-4 "
                          "cosine, crop+flip",
                  "rotation": f"small-cnn width {args.pretext_width}, {args.pretext_epochs} epochs, batch 256, "
                              "final epoch, seed 0 shared by the seeds",
                  "simclr": f"small-cnn width {args.pretext_width}, {args.simclr_epochs} epochs, batch "
                            f"{args.simclr_batch_size}, seed 0 shared by the seeds",
                  "probcover_delta": "purity rule" if args.delta is None else f"fixed {args.delta}"},
        "seeds": args.seeds,
        "series": per_series,
        "command": "python benchmarks/coldstart_cifar.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "wall_seconds": round(time.time() - started, 1),
    }
    text = json.dumps(summary, indent=1)
    (args.out / "summary.json").write_text(text + "\n")
    bench_json = REPO / "results" / "benchmarks" / "coldstart_cifar.json"
    bench_json.parent.mkdir(parents=True, exist_ok=True)
    bench_json.write_text(text + "\n")

    n = len(args.seeds)
    print(f"\n| strategy | first-cycle accuracy, {args.k} labels ({n} seeds, mean ± std) | "
          "class counts of the first query (classes 0-9, mean over seeds) | min / max class | classes missed |")
    print("|---|---|---|---|---|")
    for label, s in per_series.items():
        a = s["accuracy"]
        counts = " ".join(f"{x:g}" for x in s["class_counts_mean"])
        print(f"| {label} | {100 * a['mean']:.1f} ± {100 * a['std']:.1f} % | {counts} | "
              f"{s['min_class']} / {s['max_class']} | {s['classes_missed_mean']:g} |")
    print(f"\nwall-clock {summary['wall_seconds'] / 60:.1f} min; records under {args.out}")
    return summary


if __name__ == "__main__":
    main()
