"""The configs a sweep folder was run with, so commands given only the folder know its plan.

``albench run`` writes the validated config (overrides applied) to
``<output>/<name>/.sweep/config-<hash>.yaml`` before it queues anything, when its plan holds a run the
recorded ones do not (rerunning the same command writes nothing; ``--set seeds=[1]`` after
``--set seeds=[0]`` adds a second file). The plan of a folder is the union of the plans of its recorded configs, so
``albench status DIR`` counts the runs that have not started yet without ``--config``, even when
invocations split the seeds or the strategies between them. The configs are read back with the
folder as it lies now (the output root is the sweep folder's parent, the sweep name its name), so a
folder that was moved or copied still plans runs inside itself.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

from albench.records import atomic_write_text

RECORD_DIR = ".sweep"
PREFIX = "config-"


def sweep_dir(cfg) -> Path:
    return Path(cfg.output) / cfg.name


def record_config(cfg, plan: list) -> Path | None:
    """Write ``cfg`` (a validated :class:`~albench.config.Config`, whose runs are ``plan``) into its sweep
    folder, unless the configs recorded there already plan every one of its runs (a rerun, or a change
    of keys that name no run, such as ``threads``); returns the file written, or None."""
    from albench.config import config_to_dict

    known = {Path(rc.run_dir).resolve() for rc in recorded_plan(sweep_dir(cfg), warn=lambda msg: None) or []}
    if all(Path(rc.run_dir).resolve() in known for rc in plan):
        return None
    data = config_to_dict(cfg)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = sweep_dir(cfg) / RECORD_DIR / f"{PREFIX}{digest}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "# written by albench run: the config this sweep was run with (albench status reads "
                          "it)\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def recorded_configs(root: str | Path) -> list[Path]:
    """The recorded config files of the sweep(s) at, under (one level) or above (up to three levels) ``root``."""
    root = Path(root).resolve()
    folders = [root, *root.parents[:3]] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [p for f in folders for p in sorted((f / RECORD_DIR).glob(f"{PREFIX}*.yaml"))]


def recorded_plan(root: str | Path, *, warn=lambda msg: print(f"albench: {msg}", file=sys.stderr)) -> list | None:
    """The runs the recorded configs plan (one RunConfig per run folder, under ``root``), or None when no
    config is recorded there. A config that no longer loads (a plugin strategy uninstalled, say) is
    named through ``warn`` and left out."""
    from albench.config import build_config
    from albench.errors import AlbenchError
    from albench.plan import make_plan

    files = recorded_configs(root)
    if not files:
        return None
    root = Path(root).resolve()
    plan: dict[Path, object] = {}
    for f in files:
        folder = f.parent.parent
        try:
            raw = yaml.safe_load(f.read_text())
            raw.update(output=str(folder.parent), name=folder.name)
            runs = make_plan(build_config(raw))
        except (OSError, yaml.YAMLError, AttributeError, AlbenchError) as exc:
            warn(f"left out the sweep config recorded in {f}: {exc}")
            continue
        for rc in runs:
            d = Path(rc.run_dir).resolve()
            if d == root or root in d.parents:
                plan.setdefault(d, rc)
    return list(plan.values())
