"""Synthetic run folders with known numbers, for the report and verify tests (no training involved).

Each folder follows the records contract of bench/records.py: run.json, config.yaml, env.json,
cycles.csv, queries.json, status.json and artifacts/*.npy.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from albench.records import CYCLE_COLUMNS, PHASES


def write_run(root: Path, *, sweep: str = "synth", dataset: str = "digits", strategy: str = "random",
              strategy_name: str | None = None, seed: int = 0, values: list[float] = (0.5, 0.7, 0.8),
              initial: int = 10, budget: int = 10, cycles: int | None = None, state: str = "complete",
              protocol: str = "paper", quirks: list[str] = (), flags: list[str] = (), params: dict | None = None,
              model: str = "small-cnn", epochs: int = 15, batch_size: int = 32, min_steps: int | None = None,
              seconds: dict | None = None,
              prepare: dict | None = None, artifacts: dict | None = None, queries: dict | None = None,
              metric: str = "accuracy", device: str = "cpu", device_name: str = "Test CPU",
              dataset_info: dict | None = None, identity: dict | None = None) -> Path:
    """Write one run folder under ``root/<sweep>/<dataset>/<strategy>/seed-<seed>``; return it.

    ``values``: the metric (fraction) of each finished cycle; ``cycles``: planned cycles (default:
    len(values)); ``seconds``: {phase: per-cycle seconds list} (default 1 s train per cycle, 0 else);
    ``identity``: extra run.json fields (e.g. ``baseline``, ``phases``, ``quirk_docs``; without them
    the folder reads as one recorded before those fields existed).
    Labeled counts are initial + budget * cycle.
    """
    name = strategy_name or strategy
    d = Path(root) / sweep / dataset / strategy / f"seed-{seed}"
    (d / "artifacts").mkdir(parents=True, exist_ok=True)
    planned = len(values) if cycles is None else cycles
    ident = {"sweep": sweep, "dataset": dataset, "strategy": strategy, "strategy_name": name, "seed": seed,
             "protocol": protocol, "quirks": list(quirks), "flags": list(flags), "metric": metric,
             "task": "classification", "augment": {}, "dataset_info": dataset_info or {}, "prepare": prepare or {},
             **(identity or {})}
    (d / "run.json").write_text(json.dumps(ident))
    cfg = {"sweep": sweep, "output": str(root), "dataset": {"name": dataset, "params": {}},
           "model": {"name": model, "params": {}},
           "train": {"epochs": epochs, "batch_size": batch_size, "selection": "final",
                     **({} if min_steps is None else {"min_steps": min_steps})},
           "al": {"initial": initial, "budget": budget, "cycles": planned},
           "strategy": {"name": name, "params": dict(params or {}), "label": None if strategy == name else strategy,
                        "quirks": list(quirks)},
           "seed": seed, "protocol": protocol, "quirks": list(quirks), "flags": list(flags)}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {"python": "3.11", "torch": "2.x", "cuda": "12.4" if device.startswith("cuda") else None,
           "device": device, "device_name": device_name, "cpu": "Test CPU", "threads": 1, "hostname": "test",
           "git": {"sha": "abcdef1234567", "dirty": False}}
    (d / "env.json").write_text(json.dumps(env))
    seconds = seconds or {}
    rows = []
    for c, v in enumerate(values):
        secs = {f"seconds_{p}": float(seconds.get(p, [1.0 if p == "train" else 0.0] * len(values))[c])
                for p in PHASES}
        rows.append({"cycle": c, "n_labeled": initial + budget * c, "metric": metric, "value": v, "test_loss": 1.0,
                     **secs, "seconds_total": sum(secs.values()), "epochs": epochs, "selected_epoch": ""})
    with open(d / "cycles.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CYCLE_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    if queries is None:
        queries = {c: list(range(initial + budget * (c - 1) if c else 0, initial + budget * c))
                   for c in range(len(values))}
    (d / "queries.json").write_text(json.dumps({str(c): list(map(int, q)) for c, q in queries.items()}))
    (d / "status.json").write_text(json.dumps({"state": state}))
    for k, arr in (artifacts or {}).items():
        np.save(d / "artifacts" / f"{k}.npy", np.asarray(arr), allow_pickle=False)
    return d
