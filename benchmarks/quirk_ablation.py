"""Which official-code quirks matter: ``ablate: quirks`` sweeps on the CPU (issue 26).

Two measurements, each a sweep through the harness (records under ``--out``) and its ``albench
report`` (the quirk impact tables and figures under ``<out>/<sweep>/report``):

``pt4al-cifar``: PT4AL on the CIFAR-10 subset of the cold-start measurement
(``benchmarks/coldstart_cifar.py``: the seeded class-balanced ``cifar10-subset`` pool of
``--per-class`` images per class, K = ``--k`` labels a query, I = 10 batches, small-cnn width 16
trained ``--epochs`` epochs, batch 64, SGD lr 0.05 / 0.9 / 5e-4 cosine, crop + flip; rotation pretext
small-cnn width 16, 4 epochs, batch 256, final epoch, one pretext network per protocol shared by the
seeds). The test set is the full 10,000 images, or with ``--test-per-class n`` a seeded class-balanced
subset of 10 n (dataset ``cifar10-subset-testsub``, same pool; the sweep name gains ``-test<10 n>``):
``best_on_test`` evaluates the test set after each of the 30 epochs. Series: ``random`` and ``pt4al``
with ``ablate: quirks`` (official, official without each of its 5 quirks, paper: 7 variants).
``--cycles`` cycles (the first is the cold start).

``pt4al-cifar-sort``: the same scale, with ``string_sort`` ablated alone on top of ``paper`` (Random,
``pt4al@base``: paper + string_sort, ``pt4al@no-string_sort`` and ``pt4al@paper``), to run with a
longer pretext training (``--pretext-epochs 15``, the official recipe's length) whose pool losses
reach the values the text sort misplaces (below 1e-4, printed in scientific notation); the sweep is
named ``pt4al-cifar-sort-pretext<epochs>``.

``digits``: the quickstart protocol (``bench/configs/quickstart.yaml``: digits, small-cnn width 16 with
dropout 0.5, 20 labels then 3 queries of 20, at least 300 optimizer steps a cycle) with ``random``,
``typiclust`` with ``ablate: quirks`` (its 4 quirks: 6 variants) and ``vaal`` with ``ablate: quirks``
over its quirks but ``official-normalization`` (a 3-channel constant that 1-channel digits refuses:
4 quirks, 6 variants, the top one labelled ``vaal@base``), each with the quickstart's params.

    nice -n 19 python benchmarks/quirk_ablation.py pt4al-cifar --test-per-class 200 --threads 1 --out /work/runs/i26-ablation
    nice -n 19 python benchmarks/quirk_ablation.py pt4al-cifar-sort --pretext-epochs 15 --test-per-class 200 \
        --threads 1 --out /work/runs/i26-ablation
    nice -n 19 python benchmarks/quirk_ablation.py digits --threads 1 --out /work/runs/i26-ablation
    python benchmarks/quirk_ablation.py pt4al-cifar --seeds 0 --per-class 20 --k 20 --epochs 1 --cycles 2 \\
        --out /tmp/qa-smoke   # smoke test

Runs already complete under ``--out`` are skipped, so an interrupted measurement resumes. Writes
``<out>/<sweep>/summary.json`` (per-seed numbers and wall time) and prints the quirk impact tables.
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

from pt4al_cifar import Cifar10Subset, _run_all, _sweep  # noqa: E402  (the import registers ``cifar10-subset``)
from albench.config import build_config, quickstart_path, read_yaml  # noqa: E402
from albench.data.cifar import imbalanced_indices  # noqa: E402
from albench.data.registry import register_dataset  # noqa: E402
from albench.plan import make_plan  # noqa: E402
from albench.records import read_cycles  # noqa: E402
from albench.reports.report import build_report  # noqa: E402


@register_dataset
class Cifar10SubsetTestSubset(Cifar10Subset):
    """``cifar10-subset``'s pool (same images, same order) with a seeded class-balanced subset of the
    test set, ``test_per_class`` images of each class (``test_seed``). best_on_test evaluates the test
    set after every epoch: 30 evaluations of 10,000 images a cycle took 800 s on the shared CPU cores
    (17 h for the PT4AL ablation), 2,000 images a fifth of that."""

    name = "cifar10-subset-testsub"
    description = "cifar10-subset with a seeded class-balanced test subset of test_per_class images per class"
    params = {**Cifar10Subset.params, "test_per_class": 200, "test_seed": 0}

    def load(self, cfg):
        ds = super().load(cfg)
        n, seed = int(self.param(cfg, "test_per_class")), int(self.param(cfg, "test_seed"))
        keep = torch.from_numpy(imbalanced_indices(ds.y_test.numpy(), [n] * 10, seed))
        ds.x_test, ds.y_test = ds.x_test[keep], ds.y_test[keep]
        ds.info.update(test_per_class=n, test_seed=seed)
        return ds


def pt4al_plan(args) -> list:
    """The PT4AL ablation sweep on the cold-start measurement's CIFAR-10 subset (``pt4al-cifar``), or
    (``pt4al-cifar-sort``) the ablation of ``string_sort`` alone on top of ``paper``: Random,
    ``pt4al@base`` (string_sort on), ``pt4al@no-string_sort`` and ``pt4al@paper`` (both without it:
    the same config, run twice as the N + 2 expansion plans it)."""
    rotation = {"pretext_model": "small-cnn", "pretext_model_params": {"width": args.pretext_width},
                "pretext_epochs": args.pretext_epochs, "pretext_batch_size": 256, "pretext_selection": "final",
                "batches": args.batches}
    if args.which == "pt4al-cifar":
        strategies = ["random", {"name": "pt4al", "params": rotation, "ablate": "quirks"}]
    else:
        strategies = ["random", {"name": "pt4al", "params": rotation, "ablate": "quirks", "quirks": ["string_sort"]}]
    train = {"epochs": args.epochs, "batch_size": 64,
             "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
             "schedule": {"name": "cosine"}}
    name = args.which if args.pretext_epochs == 4 else f"{args.which}-pretext{args.pretext_epochs}"
    if args.test_per_class is not None:
        name += f"-test{10 * args.test_per_class}"
    runs = _sweep(name, args, strategies=strategies,
                  al={"initial": args.k, "budget": args.k, "cycles": args.cycles}, train=train, width=args.width)
    if args.test_per_class is None:
        return runs
    for rc in runs:  # the same pool, a smaller test set
        rc.dataset.name = "cifar10-subset-testsub"
        rc.dataset.params = {**rc.dataset.params, "test_per_class": args.test_per_class, "test_seed": 0}
    return runs


def digits_plan(args) -> list:
    """TypiClust's and VAAL's ablations under the quickstart protocol on digits."""
    raw = read_yaml(quickstart_path())
    by_name = {(s if isinstance(s, str) else s["name"]): s for s in raw["strategies"]}
    typiclust, vaal = dict(by_name["typiclust"]), dict(by_name["vaal"])
    typiclust["ablate"] = "quirks"
    from albench.strategies.registry import get_strategy

    vaal.update(ablate="quirks", quirks=[q.name for q in get_strategy("vaal").quirks
                                         if q.official and q.name != "official-normalization"])
    ablated = [s for s, name in ((typiclust, "typiclust"), (vaal, "vaal")) if name in args.digits_strategies]
    raw.update(name="digits", strategies=["random", *ablated], seeds=list(args.seeds), output=str(args.out),
               threads=args.threads, executor={"name": "local", "workers": 1})
    raw["record"] = {"embeddings": 0, "test_losses": False}
    return make_plan(build_config(raw))


def sort_check(run_dir: Path, batches: int) -> dict | None:
    """What the text sort does to one PT4AL run's pretext losses: the smallest loss, how many losses
    print in scientific notation (what ``string_sort`` misplaces) or reach 10, whether the text order
    is the numeric order, and how many images of the numeric batch 0 the text sort's batch 0 keeps."""
    from albench.records import read_artifact
    from albench.strategies.pt4al import loss_strings, sort_losses, split_batches

    loss = read_artifact(run_dir, "pretext_loss_pool")
    if loss is None:
        return None
    numeric, text = sort_losses(loss), sort_losses(loss, as_strings=True)
    b0n, b0t = split_batches(numeric, batches)[0], split_batches(text, batches)[0]
    return {"pool_losses": int(len(loss)), "min_loss": float(loss.min()), "max_loss": float(loss.max()),
            "in_scientific_notation": int(sum("e" in t for t in loss_strings(loss))),
            "at_least_10": int((loss >= 10).sum()), "text_order_is_numeric_order": bool(np.array_equal(numeric, text)),
            "batch0_size": int(len(b0n)), "batch0_shared": int(len(set(b0n.tolist()) & set(b0t.tolist())))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("which", choices=["pt4al-cifar", "pt4al-cifar-sort", "digits"])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder with cifar10.npz")
    p.add_argument("--digits-strategies", nargs="+", choices=["typiclust", "vaal"], default=["typiclust", "vaal"],
                   help="the strategies ablated beside random (digits)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "quirk-ablation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--per-class", type=int, default=200, help="pool images per class (pt4al-cifar)")
    p.add_argument("--k", type=int, default=100, help="labels per query, the first included (pt4al-cifar)")
    p.add_argument("--cycles", type=int, default=3, help="AL cycles, the cold start included (pt4al-cifar)")
    p.add_argument("--batches", type=int, default=10, help="PT4AL's I (pt4al-cifar)")
    p.add_argument("--width", type=int, default=16, help="small-cnn width of the main task (pt4al-cifar)")
    p.add_argument("--epochs", type=int, default=30, help="main-task epochs (pt4al-cifar)")
    p.add_argument("--test-per-class", type=int, default=None,
                   help="evaluate on a seeded class-balanced test subset of this many images per class "
                        "(pt4al-cifar*; default: the full 10,000-image test set)")
    p.add_argument("--pretext-width", type=int, default=16)
    p.add_argument("--pretext-epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    started = time.time()
    runs = digits_plan(args) if args.which == "digits" else pt4al_plan(args)
    sweep_dir = args.out / runs[0].sweep
    print(f"{args.which}: {len(runs)} runs, seeds {args.seeds}; records under {sweep_dir}", flush=True)
    # seed by seed (every variant of seed 0, then seed 1, ...): an interrupted measurement leaves
    # complete pairs to compare, and a rerun resumes where it stopped
    _run_all(sorted(runs, key=lambda rc: rc.seed))
    run_seconds = time.time() - started
    t0 = time.time()
    index = build_report(sweep_dir, sweep_dir / "report", tsne_max=50)
    report_seconds = time.time() - t0

    per_series: dict[str, dict] = {}
    for rc in sorted(runs, key=lambda r: (r.strategy.key, r.seed)):
        s = per_series.setdefault(rc.strategy.key, {"quirks": rc.quirks, "flags": rc.flags, "per_seed": {}})
        s["per_seed"][rc.seed] = {int(row["n_labeled"]): round(100 * float(row["value"]), 2)
                                  for row in read_cycles(rc.run_dir)}
    sorts = {}
    for rc in runs:
        if rc.strategy.name == "pt4al" and rc.seed == min(args.seeds):  # one pretext network per protocol
            check = sort_check(rc.run_dir, args.batches)
            if check is not None:
                sorts[rc.strategy.key] = check
    summary = {
        "which": args.which,
        "string_sort_check": sorts, "seeds": args.seeds, "runs": len(runs),
        "scale": ({"pool": 10 * args.per_class, "per_class": args.per_class,
                   "test": 10000 if args.test_per_class is None else 10 * args.test_per_class, "k": args.k,
                   "cycles": args.cycles, "batches": args.batches,
                   "main": f"small-cnn width {args.width}, {args.epochs} epochs, batch 64, SGD lr 0.05/0.9/5e-4 "
                           "cosine, crop+flip",
                   "rotation": f"small-cnn width {args.pretext_width}, {args.pretext_epochs} epochs, batch 256, "
                               "final epoch, seed 0 shared by the seeds"}
                  if args.which != "digits" else {"config": "bench/configs/quickstart.yaml protocol"}),
        "accuracy_pct": per_series,
        "quirk_impact_tables": [str(f) for a in index.artefacts if a.name.startswith("quirk-impact")
                                for f in a.files if f.suffix == ".csv"],
        "command": f"python benchmarks/quirk_ablation.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "wall_seconds_runs": round(run_seconds, 1), "wall_seconds_report": round(report_seconds, 1),
    }
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for a in index.artefacts:
        if a.kind == "table" and a.name.startswith("quirk-impact"):
            print("\n" + next(f for f in a.files if f.suffix == ".md").read_text())
    print(f"runs {run_seconds / 60:.1f} min, report {report_seconds:.0f} s; summary {sweep_dir / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
