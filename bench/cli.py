"""The ``albench`` command line.

Exit codes (scripts rely on them): 0 success, 2 bad input (CLI or config), 1 a run failed.
Bad input prints one line naming the field, the bad value and the fix; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from albench.errors import AlbenchError, ConfigError, RecordError

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell tool killed by a closed pipe reports


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"albench: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="albench", description="Benchmark harness for deep active learning.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a sweep (default: the packaged quickstart on digits)")
    run.add_argument("config", nargs="?", help="YAML config (default: the packaged quickstart)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set train.epochs=10 (repeatable)")
    run.add_argument("--out", help="output root (config key 'output')")
    run.add_argument("--executor", choices=["local", "debug", "slurm"], help="where runs execute")
    run.add_argument("--workers", type=int, help="parallel local worker processes")
    run.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    run.add_argument("--only", action="append", default=[], metavar="RUN_GLOB",
                     help="run only the runs whose id (dataset/strategy/seed-N) matches this glob, e.g. "
                          "'*/seed-0' (repeatable; runs go in the order of the first pattern they match, e.g. "
                          "--only '*/seed-0' --only '*/seed-1' for every strategy's seed 0 first)")
    run.add_argument("--stop-at-labels", type=int, metavar="N",
                     help="leave each run unfinished (checkpointed, resumable) once it has N labels; rerun "
                          "without it to go on (e.g. every run of a sweep to 500 labels before any goes further)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--restart-changed", action="store_true",
                     help="start over the runs whose folder was started with another config (the old folders "
                          "move to <sweep>/.replaced/<time>/)")
    run.add_argument("--restart-damaged", action="store_true",
                     help="start over the runs whose status or fingerprint record is damaged (the old folders "
                          "move to <sweep>/.replaced/<time>/)")

    ls = sub.add_parser("list", help="list registered strategies, datasets, models or official-code quirks")
    ls.add_argument("what", choices=["strategies", "datasets", "models", "quirks"])

    show = sub.add_parser("show", help="print the summary table of a sweep")
    show.add_argument("results_dir")

    status = sub.add_parser("status", help="show each run as done, running, pending or failed (records + Slurm)")
    status.add_argument("results_dir")
    status.add_argument("--lines", type=int, default=10, help="log lines shown per failed run (default 10)")
    status.add_argument("--config", help="the sweep config, so runs that have not started yet are listed too "
                                          "(default: the configs 'albench run' recorded in the sweep folder)")

    from albench.reports.cli import add_parsers  # report, verify

    add_parsers(sub)
    return p


def _refuse_changed(changed: list, sweep_dir: Path) -> None:
    from albench.drift import describe

    keys = sorted({k for _, changes in changed for k, _, _ in changes})
    runs = "; ".join(f"{rc.run_id}: {describe(changes, 3)}" for rc, changes in changed[:3])
    more = f"; and {len(changed) - 3} more run(s)" if len(changed) > 3 else ""
    raise ConfigError(", ".join(keys), f"differs from the config that {len(changed)} existing run(s) in {sweep_dir} "
                      f"were started with ({runs}{more})",
                      "set another 'name' or --out to keep both results, or rerun with --restart-changed to move "
                      f"those runs aside (to {sweep_dir / '.replaced'}/) and start them over")


def _cmd_run(args) -> int:
    from albench import integrity
    from albench.ablation import describe_ablations, expand_strategies
    from albench.plan import check_output_writable, make_plan
    from albench.reports.data import load_sweep_runs
    from albench.runlock import describe_holder
    from albench.runner import execute_plan
    from albench.runner.dispatch import pending_runs
    from albench.summary import sweep_summary
    from albench.sweeps import record_config
    from albench.validate import check_run, load_config

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"output={args.out}")
    if args.executor is not None:
        overrides.append(f"executor.name={args.executor}")
    if args.workers is not None:
        overrides.append(f"executor.workers={args.workers}")
    cfg = load_config(args.config, overrides)
    plan = make_plan(cfg)
    if args.only:
        plan = select_runs(plan, args.only)
    if args.stop_at_labels is not None:
        if args.stop_at_labels < 1:
            raise ConfigError("--stop-at-labels", "must be a positive number of labels", "pass e.g. --stop-at-labels 500",
                              args.stop_at_labels)
        for rc in plan:
            rc.stop_at_labels = args.stop_at_labels
    check_run(cfg, plan)  # device, executor, run folders' paths and links: before --dry-run answers
    sweep_dir = Path(cfg.output) / cfg.name
    found = integrity.survey(plan)  # before anything is queued or written
    if found.changed and not args.restart_changed:
        _refuse_changed(found.changed, sweep_dir)
    busy_dirs = {rc.run_dir for rc, _ in found.busy}
    to_move = [rc for rc, _ in found.changed] if args.restart_changed else []
    to_move += [rc for rc, _ in found.damaged] if args.restart_damaged else []
    held = [rc for rc in to_move if rc.run_dir in busy_dirs]
    if held:
        raise ConfigError("--restart-changed" if args.restart_changed else "--restart-damaged",
                          f"{held[0].run_id} is being written by another albench process "
                          f"({describe_holder(_holder(found, held[0]))})",
                          "wait for that process to end (or stop it), then rerun")
    damaged = [] if args.restart_damaged else found.damaged
    skip = {rc.run_dir for rc, _ in damaged}
    todo, done = pending_runs([rc for rc in plan if rc.run_dir not in skip])
    variants = expand_strategies(cfg)
    n_ablated = sum(st.ablate is not None for st in cfg.strategies)
    print(f"albench: sweep '{cfg.name}': {len(plan)} runs ({len(cfg.datasets)} dataset(s) x "
          f"{len(variants)} strategies x {len(cfg.seeds)} seeds"
          + (f"; {n_ablated} entr{'y' if n_ablated == 1 else 'ies'} expanded by 'ablate: quirks'" if n_ablated
             else "") + "), "
          f"{len([rc for rc in done if rc not in to_move])} already complete; "
          f"executor {cfg.executor.name}; output {sweep_dir}", file=sys.stderr)
    for rc, why in damaged:
        print(f"albench: damaged, left untouched: {rc.run_id}: {why}; fix: rerun with --restart-damaged to move "
              "it aside and run it again", file=sys.stderr)
    if args.dry_run:
        from albench.cpu_reach import reach_warnings

        for warning in reach_warnings(cfg):
            print(f"albench: warning: {warning}", file=sys.stderr)
        for line in describe_ablations(variants, len(cfg.seeds) * len(cfg.datasets)):
            print(line)
        moving = {rc.run_dir for rc in to_move}
        for rc in plan:
            state = ("restart" if rc.run_dir in moving else "damaged" if rc.run_dir in skip
                     else "complete" if rc in done else "to run")
            extra = f" quirks={','.join(rc.quirks)}" if rc.quirks else ""
            extra += f" flags={','.join(rc.flags)}" if rc.flags else ""
            print(f"{rc.run_id}\t{state}{extra}")
        return EXIT_OK
    check_output_writable(cfg.output)
    record_config(cfg, plan)  # albench status DIR plans the runs not started yet from it
    if to_move:
        when = integrity.stamp()
        for rc in to_move:
            dest = integrity.move_aside(rc, when)
            print(f"albench: {rc.run_id}: old folder moved to {dest}; starting it over", file=sys.stderr)
        todo, done = pending_runs([rc for rc in plan if rc.run_dir not in skip])
    integrity.clean_idle(done)
    runnable = [rc for rc in plan if rc.run_dir not in skip]
    outcomes = execute_plan(cfg, runnable, progress=not args.quiet)
    failed = [o for o in outcomes if o["state"] in ("failed", "damaged", "changed")]
    busy = [o for o in outcomes if o["state"] == "busy"]
    stopped = [o for o in outcomes if o["state"] == "stopped"]
    if stopped:
        print(f"albench: {len(stopped)} run(s) left unfinished at --stop-at-labels {args.stop_at_labels}; rerun "
              "without it to go on", file=sys.stderr)
    unreadable = []
    if sweep_dir.is_dir():
        mine = {rc.run_dir for rc in plan} - skip  # the skipped ones were named above
        sweep = load_sweep_runs(sweep_dir, allow_empty=True)
        print(sweep_summary(sweep))  # the whole sweep's, earlier invocations' seeds and strategies included
        _say_table_scope(sweep, plan)
        unreadable = _print_unreadable(sweep, mine)
    print(f"records: {sweep_dir}", file=sys.stderr)
    for o in busy:
        print(f"albench: skipped {o['run_id']}: {o['error']}", file=sys.stderr)
    if failed or damaged or unreadable:
        for o in failed:
            print(f"albench: run {'failed' if o['state'] == 'failed' else o['state']}: {o['run_id']}: {o['error']}",
                  file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


def select_runs(plan: list, patterns: list[str]) -> list:
    """The runs of ``plan`` whose id matches one of the globs ``patterns``, ordered by the first pattern
    each matches (plan order within a pattern); ConfigError naming --only when a pattern matches none."""
    import fnmatch

    picked, seen = [], set()
    for pat in patterns:
        hits = [rc for rc in plan if fnmatch.fnmatchcase(rc.run_id, pat)]
        if not hits:
            raise ConfigError("--only", "matches no run of the sweep",
                              f"use a glob over run ids such as {plan[0].run_id if plan else 'digits/random/seed-0'}",
                              pat)
        for rc in hits:
            if rc.run_id not in seen:
                seen.add(rc.run_id)
                picked.append(rc)
    return picked


def _say_table_scope(sweep, plan: list) -> None:
    """Tell, when the sweep's table holds runs this invocation did not plan, which ones it ran."""
    from albench.summary import fmt_seeds

    planned = {Path(rc.run_dir) for rc in plan}
    others = [r for r in sweep.runs if Path(r.dir) not in planned]
    if others:
        seeds = fmt_seeds(r.seed for r in sweep.runs)
        print(f"albench: the table is the sweep's: {len(sweep.runs)} runs, seeds {seeds}; this command planned "
              f"{len(plan)} of them (seeds {fmt_seeds(rc.seed for rc in plan)})", file=sys.stderr)


def quirk_rows() -> list[tuple[str, str, str, str, str]]:
    """(strategy, quirk, 'on'/'off' under protocol official, source, what it changes) per registered quirk."""
    from albench.strategies.registry import get_strategy, strategy_names

    return [(n, q.name, "on" if q.official else "off", q.source or "(no source recorded)", q.summary)
            for n in strategy_names() for q in get_strategy(n).quirks]


def _holder(found, rc) -> dict:
    return next(h for r, h in found.busy if r.run_dir == rc.run_dir)


def _print_unreadable(sweep, run_dirs: set[Path] | None = None) -> list:
    """Name on stderr each run folder of ``sweep`` (of ``run_dirs`` when given) whose records could not
    be read; the list of (folder, why)."""
    bad = [(d, why) for d, why in sweep.unreadable if run_dirs is None or Path(d) in run_dirs]
    for d, why in bad:
        print(f"albench: damaged run left out of the table: {d}: {why}", file=sys.stderr)
    return bad


def _cmd_list(args) -> int:
    if args.what == "quirks":  # one line per quirk; the last column is free text
        rows = quirk_rows()
        head = ("strategy", "quirk", "official", "source", "what it changes")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        for r in [head, *rows]:
            print("  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths)) + "  " + r[4])
        return EXIT_OK
    if args.what == "strategies":
        from albench.strategies.registry import get_strategy, strategy_names

        rows = [(n, get_strategy(n).description) for n in strategy_names()]
    elif args.what == "datasets":
        from albench.data.registry import dataset_names, get_dataset

        rows = [(n, get_dataset(n).description) for n in dataset_names()]
    else:
        from albench.models.registry import model_entry, model_families, model_names

        rows = [(n, model_entry(n).description) for n in model_names()]
        rows += [(f.listing, f.description) for f in model_families()]
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return EXIT_OK


def _cmd_show(args) -> int:
    from albench.paths import check_folder_arg
    from albench.records import find_runs
    from albench.reports.data import load_sweep_runs
    from albench.summary import sweep_summary

    fix = "pass a sweep folder such as results/quickstart"
    root = check_folder_arg(args.results_dir, "RESULTS_DIR", fix)
    if not find_runs(root):
        raise ConfigError("RESULTS_DIR", "holds no albench runs", fix, str(root))
    sweep = load_sweep_runs(root)
    print(sweep_summary(sweep))
    _print_unreadable(sweep)
    return EXIT_OK


def _cmd_status(args) -> int:
    from albench.status import status_command

    return status_command(Path(args.results_dir), lines=args.lines, config=args.config)


def _cmd_report(args) -> int:
    from albench.reports.cli import cmd_report

    return cmd_report(args)


def _cmd_verify(args) -> int:
    from albench.reports.cli import cmd_verify

    return cmd_verify(args)


COMMANDS = {"run": _cmd_run, "list": _cmd_list, "show": _cmd_show, "status": _cmd_status, "report": _cmd_report,
            "verify": _cmd_verify}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe (albench status DIR | head) shows up here, not at exit
        return code
    except BrokenPipeError:
        # the reader went away: say nothing more, and keep Python from failing again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        print(f"albench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RecordError as exc:
        print(f"albench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except AlbenchError as exc:
        print(f"albench: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("albench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
