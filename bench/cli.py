"""The ``albench`` command line.

Exit codes (scripts rely on them): 0 success, 2 bad input (CLI or config), 1 a run failed.
Bad input prints one line naming the field, the bad value and the fix; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import AlbenchError, ConfigError, RecordError

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


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
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    ls = sub.add_parser("list", help="list registered strategies, datasets or models")
    ls.add_argument("what", choices=["strategies", "datasets", "models"])

    show = sub.add_parser("show", help="print the summary table of a sweep")
    show.add_argument("results_dir")

    status = sub.add_parser("status", help="show each run as done, running, pending or failed (records + Slurm)")
    status.add_argument("results_dir")
    status.add_argument("--lines", type=int, default=10, help="log lines shown per failed run (default 10)")

    from bench.reports.cli import add_parsers  # report, verify

    add_parsers(sub)
    return p


def _cmd_run(args) -> int:
    from bench.plan import check_output_writable, make_plan
    from bench.reports.data import load_sweep_runs
    from bench.runner import execute_plan
    from bench.runner.dispatch import pending_runs
    from bench.summary import sweep_summary
    from bench.validate import load_config

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"output={args.out}")
    if args.executor is not None:
        overrides.append(f"executor.name={args.executor}")
    if args.workers is not None:
        overrides.append(f"executor.workers={args.workers}")
    cfg = load_config(args.config, overrides)
    plan = make_plan(cfg)
    todo, done = pending_runs(plan)
    sweep_dir = Path(cfg.output) / cfg.name
    print(f"albench: sweep '{cfg.name}': {len(plan)} runs ({len(cfg.datasets)} dataset(s) x "
          f"{len(cfg.strategies)} strategies x {len(cfg.seeds)} seeds), {len(done)} already complete; "
          f"executor {cfg.executor.name}; output {sweep_dir}", file=sys.stderr)
    if args.dry_run:
        for rc in plan:
            state = "complete" if rc in done else "to run"
            extra = f" quirks={','.join(rc.quirks)}" if rc.quirks else ""
            print(f"{rc.run_id}\t{state}{extra}")
        return EXIT_OK
    check_output_writable(cfg.output)
    outcomes = execute_plan(cfg, plan, progress=not args.quiet)
    failed = [o for o in outcomes if o["state"] == "failed"]
    print(sweep_summary(load_sweep_runs(sweep_dir, allow_empty=True), {rc.run_dir for rc in plan}))
    print(f"records: {sweep_dir}", file=sys.stderr)
    if failed:
        for o in failed:
            print(f"albench: run failed: {o['run_id']}: {o['error']}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


def _cmd_list(args) -> int:
    if args.what == "strategies":
        from strategies.registry import get_strategy, strategy_names

        rows = [(n, get_strategy(n).description) for n in strategy_names()]
    elif args.what == "datasets":
        from bench.data.registry import dataset_names, get_dataset

        rows = [(n, get_dataset(n).description) for n in dataset_names()]
    else:
        from models.registry import model_entry, model_families, model_names

        rows = [(n, model_entry(n).description) for n in model_names()]
        rows += [(f.listing, f.description) for f in model_families()]
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return EXIT_OK


def _cmd_show(args) -> int:
    from bench.records import find_runs
    from bench.reports.data import load_sweep_runs
    from bench.summary import sweep_summary

    root = Path(args.results_dir)
    if not root.is_dir() or not find_runs(root):
        raise ConfigError("RESULTS_DIR", "holds no albench runs", "pass a sweep folder such as results/quickstart",
                          str(root))
    print(sweep_summary(load_sweep_runs(root)))
    return EXIT_OK


def _cmd_status(args) -> int:
    from bench.status import status_command

    return status_command(Path(args.results_dir), lines=args.lines)


def _cmd_report(args) -> int:
    from bench.reports.cli import cmd_report

    return cmd_report(args)


def _cmd_verify(args) -> int:
    from bench.reports.cli import cmd_verify

    return cmd_verify(args)


COMMANDS = {"run": _cmd_run, "list": _cmd_list, "show": _cmd_show, "status": _cmd_status, "report": _cmd_report,
            "verify": _cmd_verify}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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
