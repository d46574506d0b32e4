"""Wall-clock and CPU time of ``albench report`` on a results folder, before and after issue 27's t-SNE
change, in one run.

Issue 27 found ``albench report`` taking 5 min 15 s on a 12-strategy, 3-seed Fashion-MNIST sweep,
mostly t-SNE: one panel per strategy (its lowest-seed run), each a t-SNE of up to 3,000 of the
run's recorded embeddings (record.embeddings, 5,000 by default, plus the labeled images), one panel
after the other. Its cost is therefore strategies x points per panel, whatever the seeds. The
report now embeds at most 1,000 points per panel, the panels in parallel worker processes.

Each variant is the report command run in a subprocess: ``before`` with the old defaults
(``--tsne-points 3000 --tsne-jobs 1``; with ``--before-pythonpath DIR`` the albench package found
there, e.g. an unpacked older commit, instead of this one), ``after`` with today's defaults.
Wall seconds, CPU seconds (user + system of the report and its worker processes) and the load
average at the start are written to ``--json``; the variants alternate ``--rounds`` times.

    python benchmarks/report_time.py RESULTS_DIR --json results/benchmarks/report_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {"before": ["--tsne-points", "3000", "--tsne-jobs", "1"], "after": []}


def time_report(results: str, variant: str, *, pythonpath: str | None, keep: str | None = None) -> dict:
    """One report of ``results`` with the variant's flags; its wall and CPU seconds. The report is
    written under ``keep``/<variant> when given, else to a temporary folder removed afterwards."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    flags = [] if (variant == "before" and pythonpath) else VARIANTS[variant]  # an old tree has the old defaults
    out = Path(keep) / variant if keep else Path(tempfile.mkdtemp(prefix=f"report-{variant}-"))
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "albench.cli", "report", str(Path(results).resolve()), "--out", str(out), "--quiet",
           *flags]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{variant}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"variant": variant, "flags": flags, "pythonpath": pythonpath if variant == "before" else None,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_at_start": round(load, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir")
    ap.add_argument("--rounds", type=int, default=1, help="before/after pairs, alternating (default 1)")
    ap.add_argument("--before-pythonpath", help="run 'before' with the albench package under this folder")
    ap.add_argument("--json", help="write the timings here")
    ap.add_argument("--keep", help="keep each variant's report under KEEP/<variant>")
    args = ap.parse_args(argv)
    rows = []
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for v in order:
            rows.append(time_report(args.results_dir, v, pythonpath=args.before_pythonpath if v == "before" else None,
                                    keep=args.keep))
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for key in ("wall_s", "cpu_s"):
        b = sum(x[key] for x in rows if x["variant"] == "before")
        a = sum(x[key] for x in rows if x["variant"] == "after")
        summary[f"{key}_ratio_before_over_after"] = round(b / a, 2) if a else None
    print(json.dumps(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"results_dir": args.results_dir, "cores": os.cpu_count(),
                                               "rows": rows, **summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
