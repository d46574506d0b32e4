"""Regenerate the golden records of ``tests/test_golden.py``: ``python -m tests.golden.make_golden``.

The expected files pin what a fixed small sweep records (queried indices, metric, test loss) so
that refactors of the engine, the strategies and their params are checked to change nothing. Run it
only when a change is *meant* to change these numbers, and say so in the commit.

float32 training is exact only on one kind of CPU: MKL and oneDNN pick their kernels by instruction
set, and the last bits of a sum differ between them (on an AVX2-only AMD EPYC, cycle 0's test loss of
``expected.json`` reads 8.582292 for 8.582591, and later queries diverge). ``expected.json`` was made
on the machine kind CI runs on; another kind keeps its own file, ``expected-<vendor>-<capability>.json``
(``--machine`` writes it, from the same code), which the test reads on that kind instead.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected.json"


def machine_key() -> str:
    """``<CPU vendor>-<torch's CPU capability>``, e.g. ``AuthenticAMD-AVX2``: what picks the kernels."""
    import platform

    import torch

    vendor = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}"


def expected_file() -> Path:
    """This machine kind's own golden file if one was made on it, else ``expected.json``."""
    own = HERE / f"expected-{machine_key()}.json"
    return own if own.exists() else EXPECTED

# Every built-in strategy at a size that runs in seconds on the CPU (the quickstart's params, smaller).
STRATEGIES = [
    "random", "least-confidence", "entropy", "margin",
    {"name": "pt4al", "params": {"pretext_model": "small-cnn", "pretext_model_params": {"width": 8},
                                  "pretext_epochs": 2, "pretext_batch_size": 64}},
    {"name": "pt4al-pretext-only", "params": {"pretext_model": "small-cnn",
                                               "pretext_model_params": {"width": 8},
                                               "pretext_epochs": 2, "pretext_batch_size": 64}},
    "pt4al-sampling-only", "coreset",
    {"name": "uncertaingcn", "params": {"subset": 100}},
    {"name": "coregcn", "params": {"subset": 100}},
    "learning-loss", "learning-loss-detached",
    {"name": "vaal", "params": {"iterations": 4, "batch_size": 32, "width": 8}},
    {"name": "pal", "params": {"scorer_model": "small-cnn", "scorer_params": {"width": 8}, "epochs": 2,
                               "batch_size": 32, "sub_query": 10, "finetune_epochs": 1,
                               "crop_padding": 1, "hflip": False}},
]

RAW = {
    "name": "golden",
    "protocol": "paper",
    "dataset": {"name": "digits"},
    "model": {"name": "small-cnn", "params": {"width": 8}},
    "train": {"epochs": 8, "batch_size": 16, "optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
    "al": {"initial": 20, "budget": 20, "cycles": 3},
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 0},
}


def raw_config(output: str, strategies=None) -> dict:
    raw = copy.deepcopy(RAW)
    raw["strategies"] = copy.deepcopy(strategies if strategies is not None else STRATEGIES)
    raw["output"] = output
    return raw


def run_sweep(output: str, strategies=None) -> dict:
    """``{label: {"queries": {...}, "cycles": [{value, test_loss, n_labeled, epochs, selected_epoch}]}}``."""
    from albench.config import build_config
    from albench.engine.loop import execute_run
    from albench.plan import make_plan
    from albench.records import read_cycles

    out = {}
    for rc in make_plan(build_config(raw_config(output, strategies))):
        outcome = execute_run(rc)
        if outcome.state != "complete":
            raise RuntimeError(f"{rc.run_id}: {outcome.error}")
        queries = json.loads((rc.run_dir / "queries.json").read_text())
        cycles = [{k: r[k] for k in ("n_labeled", "value", "test_loss", "epochs", "selected_epoch")}
                  for r in read_cycles(rc.run_dir)]
        out[rc.strategy.key] = {"queries": queries, "cycles": cycles}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target = HERE / f"expected-{machine_key()}.json" if "--machine" in argv else EXPECTED
    with tempfile.TemporaryDirectory() as tmp:
        records = run_sweep(tmp)
    target.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target} ({len(records)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
