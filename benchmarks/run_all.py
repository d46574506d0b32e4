"""Run every benchmark and print one table.

    python benchmarks/run_all.py                  # everything (about 75 minutes on 2 idle CPU cores)
    python benchmarks/run_all.py --skip-cycles    # throughput and select benchmarks only
    python benchmarks/run_all.py --table-only     # reprint the table from the last JSON files

What runs, in this order (results as JSON under results/benchmarks/):

1. pytest-benchmark: ``test_train_throughput.py`` (our training loop against a DataLoader + PIL
   loop), ``test_select_bench.py`` and ``test_select_ll_vaal.py`` (``select`` time and peak extra
   memory per strategy at 10k and 50k pools, 512-d embeddings) -> ``benchmarks.json``;
2. ``cycle_times.py``: whole-cycle time per strategy as a ratio to Random on one scaled CIFAR-10
   CPU workload (small-cnn) -> ``cycle_times.json``; then the paper's four strategies on the
   uniformly slimmed workload (ResNet-18 and the VAE at a quarter of their official widths, a
   1,000-image pool; about 15 minutes) -> ``cycle_times_resnet.json``;
3. with a CUDA GPU only, ``pt4al_protocol_time.py``: the projected time of the full PT4AL paper
   protocol (ResNet-18, 10 cycles x 200 epochs) on it -> ``pt4al_protocol_time.json``.

Run it on an otherwise idle machine: every number is a wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "benchmarks"
PYTEST_FILES = ["benchmarks/test_train_throughput.py", "benchmarks/test_select_bench.py",
                "benchmarks/test_select_ll_vaal.py"]


def _rows_throughput(benchmarks: list[dict]) -> list[tuple]:
    rows = []
    by_group: dict[str, list[dict]] = {}
    for b in benchmarks:
        if b["group"] and b["group"].startswith("train-"):
            by_group.setdefault(b["group"], []).append(b)
    for group, items in sorted(by_group.items()):
        ips = {b["extra_info"]["loop"]: b["extra_info"]["images_per_s"] for b in items}
        # the malloc settings are process-wide: flag a comparison case measured after they were applied
        late = {b["extra_info"]["loop"] for b in items
                if b["extra_info"].get("malloc") == "tuned" and b["extra_info"]["loop"] != "albench"}
        baselines = [v for k, v in ips.items() if k.startswith("dataloader-pil-w")
                     and "channels-last" not in k]
        best = max(baselines) if baselines else None
        for loop, v in sorted(ips.items(), key=lambda kv: -kv[1]):
            ratio = f"{v / best:.2f}x best DataLoader" if best else ""
            target = "target >= 1.5x" if loop == "albench" else ""
            label = f"{group[6:]} {loop}" + (" (measured with albench's malloc settings)" if loop in late else "")
            rows.append(("train throughput", label, f"{v:.0f} images/s", ratio, target))
    return rows


def _rows_select(benchmarks: list[dict]) -> list[tuple]:
    rows = []
    for b in benchmarks:
        info = b["extra_info"]
        if "pool_size" not in info:
            continue
        params = ",".join(f"{k}={v}" for k, v in sorted(info.get("params", {}).items()))
        name = info["strategy"] + (f" ({params})" if params else "")
        extra = f"peak +{info['peak_extra_mb']:.1f} MB" if info.get("peak_extra_mb") is not None else ""
        if info.get("peak_extra_over_embeddings") is not None:
            extra += f" ({info['peak_extra_over_embeddings']:.2f}x embeddings)"
        ref = ""
        if "select_over_floor_min" in info:
            ref = f"{info['select_over_floor_min']:.2f}x bandwidth floor (target <= 1.5x, memory < 2x)"
        rows.append(("select", f"{name} @ {info['pool_size'] // 1000}k pool", f"{b['stats']['min']:.3f} s",
                     extra, ref))
    return rows


def _rows_cycles(summary: dict, what: str = "cycle time") -> list[tuple]:
    rows = []
    base = sum(summary["random_seconds"]) / len(summary["random_seconds"])
    rows.append((what, "random", f"{base:.1f} s", "1.00x Random",
                 f"noise {100 * summary['random_noise']:.1f}% (spread of {len(summary['random_seconds'])} Random runs)"))
    for r in summary["strategies"]:
        paper = "" if r["paper_ratio"] is None else f"paper {r['paper_ratio']:.2f}x" + (
            " (below)" if r["below_paper"] else " (NOT below)")
        rows.append((what, r["label"], f"{r['seconds']:.1f} s", f"{r['ratio_to_random']:.2f}x Random", paper))
    return rows


def _rows_protocol(summary: dict) -> list[tuple]:
    return [("PT4AL protocol", f"{summary['model']} on {summary['device']}",
             f"{summary['projected_minutes']:.1f} min projected", f"{summary['train_images_per_s']:.0f} train images/s",
             f"paper {summary['paper_minutes']} min; goal <= {summary['goal_minutes_h100']} min on an H100")]


def table(bench_json: Path, cycles_json: Path, protocol_json: Path | None = None,
          cycles_resnet_json: Path | None = None) -> str:
    """The combined Markdown table of whatever result files exist."""
    rows: list[tuple] = []
    if bench_json.exists():
        benchmarks = json.loads(bench_json.read_text())["benchmarks"]
        rows += _rows_throughput(benchmarks) + _rows_select(benchmarks)
    if cycles_json.exists():
        rows += _rows_cycles(json.loads(cycles_json.read_text()))
    if cycles_resnet_json is not None and cycles_resnet_json.exists():
        rows += _rows_cycles(json.loads(cycles_resnet_json.read_text()), "cycle time, resnet18 w16")
    if protocol_json is not None and protocol_json.exists():
        rows += _rows_protocol(json.loads(protocol_json.read_text()))
    if not rows:
        return "no benchmark results yet"
    lines = ["| benchmark | case | measured | relative | reference |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run every albench benchmark and print one table.")
    p.add_argument("--skip-cycles", action="store_true", help="skip the (long) whole-cycle benchmark")
    p.add_argument("--table-only", action="store_true", help="only print the table from existing JSON")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench_json, cycles_json = RESULTS / "benchmarks.json", RESULTS / "cycle_times.json"
    protocol_json = RESULTS / "pt4al_protocol_time.json"
    cycles_resnet_json = RESULTS / "cycle_times_resnet.json"
    if not args.table_only:
        rc = subprocess.call([sys.executable, "-m", "pytest", *PYTEST_FILES, "-q", "-p", "no:cacheprovider",
                              f"--benchmark-json={bench_json}"], cwd=REPO)
        if rc != 0:
            return rc
        if not args.skip_cycles:
            rc = subprocess.call([sys.executable, "benchmarks/cycle_times.py", "--json", str(cycles_json)], cwd=REPO)
            if rc != 0:
                return rc
            rc = subprocess.call([sys.executable, "benchmarks/cycle_times.py", "--model", "resnet18-cifar",
                                  "--per-class", "100", "--test-per-class", "20", "--strategies", "pt4al",
                                  "learning-loss", "vaal", "coregcn", "--json", str(cycles_resnet_json)], cwd=REPO)
            if rc != 0:
                return rc
        import torch

        if torch.cuda.is_available():
            rc = subprocess.call([sys.executable, "benchmarks/pt4al_protocol_time.py", "--json", str(protocol_json)],
                                 cwd=REPO)
            if rc != 0:
                return rc
    print(table(bench_json, cycles_json, protocol_json, cycles_resnet_json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
