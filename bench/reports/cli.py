"""The ``report`` and ``verify`` subcommands (parsers and handlers; ``albench/cli.py`` wires them in).

Exit codes: ``report`` 0 when written (a partial sweep is reported, its missing runs listed), 2 on
bad input. ``verify`` 1 when any check fails; 0 when at least one passes and none fails; 2 on bad
input, including when nothing in the results folder is comparable with the reference (every check
refused, missing or short of seeds), so a script never mistakes "checked nothing" for success.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from albench.errors import ConfigError
from albench.typed import MAX_COUNT

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_parsers(sub) -> None:
    """Add ``report`` and ``verify`` to the ``albench`` subparsers."""
    rep = sub.add_parser("report", help="write figures (PNG, PDF) and tables (Markdown, LaTeX, CSV) of a results "
                                        "folder")
    rep.add_argument("results_dir", help="a sweep folder (or an output root holding several sweeps)")
    rep.add_argument("--out", help="report folder (default: RESULTS_DIR/report)")
    rep.add_argument("--config", help="the sweep config, so runs that never started are listed as missing")
    rep.add_argument("--tsne-points", type=int, default=1000,
                     help="points per t-SNE panel, a seeded random subset of each run's recorded embeddings "
                          "(default 1000; the caption says so)")
    rep.add_argument("--tsne-threads", type=int, default=1,
                     help="threads for each t-SNE (default 1, fastest on a shared machine; 0: library default)")
    rep.add_argument("--tsne-jobs", type=int, default=0,
                     help="t-SNE panels computed at once, in worker processes (default 0: one per usable core)")
    rep.add_argument("--reach", type=float, action="append", default=[], metavar="PCT",
                     help="a metric threshold in percent for the label-efficiency table (labels to reach it), "
                          "e.g. --reach 90 --reach 95 (repeatable)")
    rep.add_argument("--only", action="append", default=[], metavar="RUN_GLOB",
                     help="report only the runs whose id (dataset/strategy/seed-N) matches this glob, e.g. "
                          "--only '*/bald/*' --only '*/random/*' (repeatable; the index says so)")
    rep.add_argument("--quiet", action="store_true", help="print only where the report is")

    ver = sub.add_parser("verify", help="compare a results folder with a paper's reported numbers")
    ver.add_argument("results_dir")
    ver.add_argument("--reference", required=True, help="reference YAML, e.g. results/reference/pt4al-eccv2022.yaml")
    ver.add_argument("--only", action="append", default=[], metavar="ID_GLOB",
                     help="check only ids matching this glob, e.g. 'table1-*' (repeatable)")


def _expected(config: str) -> list[tuple[str, str, str, int]]:
    from albench.validate import load_config
    from albench.plan import make_plan

    cfg = load_config(config, [], check_data=False)  # only the plan: a report never reads the data
    return [(rc.sweep, rc.dataset.name, rc.strategy.key, rc.seed) for rc in make_plan(cfg)]


def cmd_report(args) -> int:
    from albench.reports.report import build_report

    from albench.paths import check_folder_arg, check_path_text, first_link, links_in, refuse_links

    root = check_folder_arg(args.results_dir, "RESULTS_DIR", "pass a sweep folder such as results/quickstart")
    if not 10 <= args.tsne_points <= MAX_COUNT:
        raise ConfigError("--tsne-points", f"must be in 10..{MAX_COUNT}", "use e.g. --tsne-points 3000",
                          args.tsne_points)
    if not 0 <= args.tsne_jobs <= 1024:
        raise ConfigError("--tsne-jobs", "must be in 0..1024", "use 1 (one panel at a time), or 0 for one per core",
                          args.tsne_jobs)
    if not 0 <= args.tsne_threads <= 1024:
        raise ConfigError("--tsne-threads", "must be in 0..1024", "use 1, or 0 for the library default",
                          args.tsne_threads)
    if args.out is not None:
        check_path_text(args.out, "--out", "pass a report folder of a shorter path")
    for pct in args.reach:
        if not 0 < pct <= 100:
            raise ConfigError("--reach", "must be a metric threshold in percent, in (0, 100]", "pass e.g. --reach 90",
                              pct)
    out = Path(args.out) if args.out else root / "report"
    if args.out is None:  # inside the results folder: never written through a link
        refuse_links([p for rel in ("report", "report/figures", "report/tables")
                      if (p := first_link(root, rel)) is not None] + links_in(out), "--out")
    expected = _expected(args.config) if args.config else None
    log = (lambda m: None) if args.quiet else (lambda m: print(f"albench: {m}", file=sys.stderr))
    index = build_report(root, out, expected=expected, tsne_max=args.tsne_points,
                         tsne_threads=args.tsne_threads or None, tsne_jobs=args.tsne_jobs or None,
                         reach=tuple(args.reach), only=tuple(args.only), log=log)
    for d, why in index.unreadable:
        print(f"albench: damaged run left out of the report: {d}: {why}", file=sys.stderr)
    n_fig = sum(a.kind == "figure" for a in index.artefacts)
    n_tab = sum(a.kind == "table" for a in index.artefacts)
    if index.missing:
        print(f"albench: partial sweep: {len(index.missing)} run(s) absent or unfinished:", file=sys.stderr)
        for m in index.missing[:20]:
            print(f"  {m.line()}", file=sys.stderr)
        if len(index.missing) > 20:
            print(f"  ... and {len(index.missing) - 20} more (see the index)", file=sys.stderr)
    if args.quiet:  # otherwise the progress lines already said so
        for s in index.skipped:
            print(f"albench: skipped {s.what} ({s.dataset}): {s.reason}", file=sys.stderr)
    print(f"albench: {n_fig} figure(s), {n_tab} table(s); index: {out / 'index.md'}", file=sys.stderr)
    print(out / "index.md")
    return EXIT_OK


def cmd_verify(args) -> int:
    from albench.reports.data import load_sweep_runs
    from albench.reports.verify import FAIL, PASS, format_counts, format_outcome, load_reference, verify

    meta, checks = load_reference(args.reference)
    if args.only:
        checks = [c for c in checks if any(fnmatch.fnmatchcase(c.id, pat) for pat in args.only)]
        if not checks:
            raise ConfigError("--only", "matches no check id", "list the ids in the reference file", args.only)
    from albench.paths import check_folder_arg

    check_folder_arg(args.results_dir, "RESULTS_DIR", "pass a sweep folder such as results/quickstart")
    sweep = load_sweep_runs(args.results_dir)
    outcomes = verify(sweep, checks)
    print(f"reference: {meta.get('paper') or meta.get('name') or args.reference} ({len(checks)} checks)")
    print(f"results:   {args.results_dir} ({len(sweep.runs)} runs)")
    print()
    for o in outcomes:
        print(format_outcome(o))
    print()
    print(format_counts(outcomes))
    statuses = {o.status for o in outcomes}
    if FAIL in statuses:
        return EXIT_FAILED
    if PASS in statuses:
        return EXIT_OK
    sys.stdout.flush()  # the reasons above come first
    print("albench: error: nothing to verify: no run under RESULTS_DIR is comparable with any reference number "
          "(see the reasons above); fix: run the sweep the reference describes, or pass --only for the checks "
          "you ran", file=sys.stderr)
    return EXIT_BAD_INPUT
