"""Config drift: the keys of a run's config that decide its result, and the check against its folder.

Every run folder holds ``fingerprint.json``: the sha256 and the flat values of the result keys of the
config it was started with. A rerun whose result keys differ from an existing folder's (complete or
unfinished) would reuse or mix results of another config, so it is refused before anything is
queued (see :mod:`albench.runner.guard`).

Which keys count. Everything in the run's resolved config (``config.yaml``) except:

- ``sweep``, ``output``, ``dataset.name``, ``strategy.label``, ``seed``: they name the folder itself;
- ``dataset.root``, ``dataset.download``: where the data lives (a moved data folder, or a node that
  mounts it elsewhere, holds the same data; ``run.json`` records the dataset's info);
- ``threads``: a resource, derived from ``--workers`` or Slurm's ``cpus_per_task`` when unset
  (``env.json`` records the threads each run used);
- ``train.checkpoint_every``: resuming from any checkpoint ends equal to an uninterrupted run;
- ``record.*``: which analysis arrays are saved, not the numbers or queries recorded;
- ``tracking.*``: where the numbers are mirrored (TensorBoard, MLflow), not what they are;
- ``baseline``: which strategy reports divide by, not what any run records;
- ``ablation``: which quirk ablation a run belongs to (reports group by it); the run's own quirks,
  which do decide its result, are recorded and compared under ``quirks`` and ``strategy.quirks``.
- ``stop_at_labels``: where one invocation leaves a run unfinished (``--stop-at-labels``), not its protocol.

``device`` does count: CPU and CUDA runs give different numbers (other kernels, and ``amp: auto``
means bf16 on CUDA). The executor, its workers and the Slurm resources are not part of a run's
config at all, so they never count.

Folders written before fingerprints existed are compared through their ``config.yaml``.

A schema key the older run's record lacks (added by a newer albench) is compared against its schema
default, since every key is added with a default that keeps the older behaviour: left at the default
it never invalidates older runs, while ``--set train.min_steps=300`` on a run started before the key
existed is a change (0 -> 300). A key only the older record has (removed since) does not count.
Under ``model.params``, ``dataset.params`` and ``strategy.params`` (user-set, free-form) a key that
one side lacks is a change too, so ``--set model.params.width=32`` on a run started without it is
refused. (Strategy params are recorded with their defaults filled in, so a strategy that gains a
param counts as changed for older runs.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

FINGERPRINT = "fingerprint.json"
VERSION = 1
NEUTRAL = frozenset({"sweep", "output", "threads", "seed", "dataset.name", "dataset.root", "dataset.download",
                     "strategy.label", "train.checkpoint_every", "baseline", "ablation", "stop_at_labels"})
NEUTRAL_PREFIXES = ("record.", "tracking.", "ablation.")


class DamagedFingerprint(ValueError):
    """fingerprint.json (or config.yaml, for old folders) exists but cannot be read."""


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        if not obj and ".params" not in f".{prefix}":
            out[prefix] = obj
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = obj


def _free_form(key: str) -> bool:
    """Keys under a ``params`` mapping (model, dataset, strategy params) are set by users, not by
    albench's schema: one that only one side has is a change."""
    return ".params." in f".{key}"


def result_keys(run_config: dict) -> dict[str, Any]:
    """{dotted key: value} of the keys of a run's config (``RunConfig.to_dict()``) that decide its result."""
    flat: dict[str, Any] = {}
    _flatten(run_config, "", flat)
    return {k: v for k, v in sorted(flat.items())
            if k not in NEUTRAL and not k.startswith(NEUTRAL_PREFIXES)}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def fingerprint(run_config: dict) -> dict:
    """What fingerprint.json holds: {'version', 'sha256', 'keys'} for a run config dict."""
    keys = result_keys(run_config)
    digest = hashlib.sha256(_canon(keys).encode()).hexdigest()
    return {"version": VERSION, "sha256": digest, "keys": json.loads(_canon(keys))}


def recorded_keys(run_dir: Path) -> dict[str, Any] | None:
    """The result keys a folder was started with: from fingerprint.json, else (older folders) from
    config.yaml; None when the folder records neither. DamagedFingerprint when unreadable."""
    import os

    from albench.records import DamagedRecord, read_json_record, read_yaml_record

    run_dir = Path(run_dir)
    fp = run_dir / FINGERPRINT
    if os.path.lexists(fp):  # read without following links; a folder or a FIFO is damage, never opened
        try:
            data = read_json_record(fp)
            if not isinstance(data, dict) or "keys" not in data:
                raise DamagedRecord(fp, "no 'keys' mapping")
            if not isinstance(data["keys"], dict):
                raise DamagedRecord(fp, "'keys' is not a mapping")
            return data["keys"]
        except DamagedRecord as exc:
            raise DamagedFingerprint(str(exc)) from None
    cfg = run_dir / "config.yaml"
    if not os.path.lexists(cfg):
        return None
    try:
        raw = read_yaml_record(cfg)
        if not isinstance(raw, dict):
            raise DamagedRecord(cfg, "not a mapping")
    except DamagedRecord as exc:
        raise DamagedFingerprint(str(exc)) from None
    try:  # fill defaults of keys added since, so only real differences count
        from albench.plan import RunConfig

        raw = RunConfig.from_dict(raw).to_dict()
    except Exception:  # noqa: BLE001 - a config of another version: compare what it says
        pass
    return json.loads(_canon(result_keys(raw)))


RESULT_FILES = ("checkpoint.pt", "cycles.csv", "queries.json", "artifacts")


def holds_results(run_dir: Path) -> bool:
    """Whether a folder holds anything of a result: a checkpoint, cycle rows, queries or artifacts (a
    run that failed or was killed before its first checkpoint holds none, and may start over as any
    config)."""
    return any((Path(run_dir) / name).exists() for name in RESULT_FILES)


def changed_keys(run_config: dict, run_dir: Path) -> list[tuple[str, Any, Any]]:
    """[(key, recorded value, new value)] where ``run_config`` differs from what ``run_dir`` was started
    with; [] when equal, or when the folder holds no result yet (:func:`holds_results`).
    DamagedFingerprint when unreadable."""
    if not holds_results(run_dir):
        return []
    old = recorded_keys(run_dir)
    if old is None:
        return []
    return compare(old, run_config)


_MISSING = object()


def schema_default(key: str) -> Any:
    """The default albench's config schema gives dotted ``key`` (e.g. ``train.min_steps``) as the
    fingerprint records it, or ``_MISSING`` when the key has none or is not a schema key."""
    import dataclasses

    from albench.plan import RunConfig
    from albench.typed import NO_DEFAULT, param_spec, to_dict

    entry: tuple[Any, Any] = (RunConfig, NO_DEFAULT)  # (type, default) of the section or key reached
    for part in key.split("."):  # down the nested config sections (train, train.schedule, ...)
        spec = param_spec(entry[0]) if dataclasses.is_dataclass(entry[0]) else {}
        if part not in spec:
            return _MISSING
        entry = spec[part]
    value = entry[1]
    if value is NO_DEFAULT:
        return _MISSING
    return json.loads(_canon(to_dict(value) if dataclasses.is_dataclass(value) else value))


def compare(old: dict[str, Any], run_config: dict) -> list[tuple[str, Any, Any]]:
    """[(key, old value, new value)] between recorded result keys ``old`` and ``run_config``'s."""
    new = fingerprint(run_config)["keys"]
    missing = _MISSING
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a is missing and b is not missing and not _free_form(key):
            # a key added since the run started: it ran with the behaviour of the key's default
            a = schema_default(key)
            if a is missing:
                continue
        if (a is missing or b is missing) and not _free_form(key):
            continue  # a schema key removed since: the newer config cannot set it
        if a is missing or b is missing or _canon(a) != _canon(b):
            out.append((key, None if a is missing else a, None if b is missing else b))
    return out


def write_fingerprint(run_config: dict, run_dir: Path) -> None:
    """Write fingerprint.json (atomic) unless the folder already holds results under one."""
    from albench.records import atomic_write_json

    path = Path(run_dir) / FINGERPRINT
    if not path.exists() or not holds_results(run_dir):
        atomic_write_json(path, fingerprint(run_config))


def describe(changes: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    """'train.epochs 3 -> 6, al.budget 20 -> 30' (the first ``limit`` changes)."""
    parts = [f"{k} {_canon(a)} -> {_canon(b)}" for k, a, b in changes[:limit]]
    more = len(changes) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")
