"""Loading a sweep config: the checks that need the disk or the resolved strategies.

:func:`albench.config.build_config` checks what the config text alone decides. The checks here need
more: the data roots and pool sizes on disk, a model's files, and each strategy's params as the
plan resolves them (defaults and protocol quirks applied) against the AL schedule and the dataset's
task. They sit above both :mod:`albench.config` and :mod:`albench.plan`, so neither imports the other
back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from albench.ablation import expand_strategies
from albench.config import Config, build_config, quickstart_path, read_yaml
from albench.errors import ConfigError
from albench.paths import (MAX_PATH_BYTES, PSEUDO_FS, ROOT_DOT_FOLDERS, SWEEP_DOT_FOLDERS, first_link, refuse_links,
                           run_folder_links)
from albench.plan import resolve_strategy


def validate_environment(cfg: Config) -> None:
    """Checks that read the disk: data roots exist and each pool can hold the AL schedule; then each
    strategy's resolved params against the pool size, the schedule and the dataset's task."""
    from albench.data.pool import pool_size
    from albench.data.registry import get_dataset
    from albench.models.registry import model_entry
    from albench.strategies.registry import get_strategy

    check_output(cfg.output)
    entry = model_entry(cfg.model.name)
    if entry.check is not None:  # e.g. a pretrained-weights file that must exist
        entry.check(cfg.model.params, "model.params", cfg.train)
    if cfg.train.test_passes:  # MC-dropout averaging at test time needs dropout in the model
        from albench.models.registry import dropout_params

        ps = dropout_params(cfg.model.name, cfg.model.params)
        if not any(isinstance(p, (int, float)) and p > 0 for p in ps.values()):
            raise ConfigError("train.test_passes", f"needs a model with dropout; model {cfg.model.name!r} has "
                              + (f"{', '.join(f'{k}={v}' for k, v in ps.items())}" if ps else "no dropout param"),
                              "set train.test_passes: 0 (one pass with dropout off), or give the model dropout "
                              "(e.g. model.params.dropout: 0.5)", cfg.train.test_passes)
    for i, ds in enumerate(cfg.datasets):
        spec = get_dataset(ds.name)
        spec.check(ds, f"datasets[{i}]")
        if entry.check_data is not None:  # e.g. a features file's rows and fingerprint against this dataset
            entry.check_data(cfg.model.params, "model.params", ds, f"datasets[{i}]")
        if cfg.train.test_passes and spec.task != "classification":
            raise ConfigError("train.test_passes", f"MC-dropout averaging is defined for classification; dataset "
                              f"{ds.name!r} is {spec.task}", "set train.test_passes: 0", cfg.train.test_passes)
        classes = getattr(spec, "class_names", None)
        if cfg.al.initial_selection == "balanced" and classes and cfg.al.initial % len(classes):
            raise ConfigError("al.initial", f"a balanced initial set needs a multiple of the {len(classes)} classes "
                              f"of {ds.name!r}", f"set al.initial to e.g. {max(1, cfg.al.initial // len(classes)) * len(classes)}",
                              cfg.al.initial)
        pool = pool_size(spec, ds, f"datasets[{i}]")  # after subsample / imbalance
        if cfg.train.selection == "best-on-validation" and cfg.train.validation.source == "train":
            v = cfg.train.validation.size
            pool -= int(round(v * pool)) if v < 1 else int(v)
        if cfg.al.final_labeled > pool:
            raise ConfigError(
                "al", f"the schedule needs {cfg.al.final_labeled} labels (initial {cfg.al.initial} + "
                f"budget {cfg.al.budget} x {cfg.al.cycles - 1} cycles) but the {ds.name} pool has {pool} images",
                "lower al.initial, al.budget or al.cycles", cfg.al.final_labeled)
        channels = spec.channels(ds)
        for v in expand_strategies(cfg):  # per-strategy bounds that depend on pool size and schedule
            st, j = v.strategy, v.index
            resolved, run_train, *_ = resolve_strategy(st, v.protocol, cfg.train, f"strategies[{j}]")
            if channels is not None:  # normalisation constants (e.g. a quirk's) must fit the images
                run_train.augment.resolve((0.0,) * channels, (1.0,) * channels, channels,
                                          where=f"strategy {st.key!r} on dataset {ds.name!r}: ")
            get_strategy(st.name).check_schedule(resolved.params, pool_size=pool, initial=cfg.al.initial,
                                                 budget=cfg.al.budget, cycles=cfg.al.cycles,
                                                 path=f"strategies[{j}].params")
            get_strategy(st.name).check_task(resolved.params, task=spec.task, path=f"strategies[{j}].params")
            get_strategy(st.name).check_model(resolved.params, model=cfg.model.name,
                                              model_params=dict(cfg.model.params), path="model.params")


def check_output(output: str) -> None:
    """ConfigError naming ``output`` unless runs can be written under it: it is a folder, or its nearest
    existing parent is a folder this user may create folders in, outside the pseudo file systems."""
    p = Path(output).expanduser()
    absolute = Path(os.path.abspath(p))
    fs = next((f for f in PSEUDO_FS if absolute == Path(f) or Path(f) in absolute.parents), None)
    if fs is not None:  # os.access cannot tell: root may "write" /proc
        raise ConfigError("output", f"points into {fs}, a pseudo file system where no run can be written",
                          "point output (or --out) at a folder you can write", output)
    if p.exists() and not p.is_dir():
        raise ConfigError("output", "is a file, not a folder", "point output (or --out) at a folder", output)
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError("output", f"cannot be written: {probe} is not a folder this user may write in",
                          "point output (or --out) at a folder you can write", output)


# bytes a run folder's path leaves for the names albench writes in it (artifacts/<name>.npy and the
# temp file of its atomic write)
RUN_PATH_MARGIN = 128


def check_run(cfg: Config, plan: list) -> None:
    """What only ``albench run`` needs, checked before anything is queued or written (``--dry-run``
    included): the device exists where the runs execute, the executor can be used, every run
    folder's path fits the OS's limits and no folder or record albench would write is a link."""
    check_device(cfg)
    if cfg.executor.name == "slurm":
        from albench.runner.slurm import check_slurm

        check_slurm("executor.name")
    check_run_paths(cfg, plan)
    if cfg.tracking.mlflow is not None:
        from albench.tracking import check_mlflow_reachable

        check_mlflow_reachable(cfg.tracking.mlflow, "tracking.mlflow")


def check_device(cfg: Config) -> None:
    """ConfigError naming ``device`` unless the CUDA device it names exists where the runs execute:
    here for the local and debug executors; on a Slurm task, among the ``gpus_per_task`` GPUs it is
    given (a login node may have none)."""
    m = re.fullmatch(r"cuda(?::(\d+))?", cfg.device)
    if m is None:
        return
    index = int(m.group(1) or 0)
    if cfg.executor.name == "slurm":
        gpus = cfg.executor.slurm.gpus_per_task
        if index >= gpus:
            raise ConfigError("device", f"asks for {cfg.device}, but each Slurm task gets {gpus} GPU(s) "
                              "(executor.slurm.gpus_per_task)",
                              "set executor.slurm.gpus_per_task to 1 or more, or device: auto", cfg.device)
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError("device", "asks for CUDA but no GPU is visible here", "set device: auto or cpu",
                          cfg.device)
    if index >= count:
        raise ConfigError("device", f"asks for GPU {index}, but this machine has {count} (cuda:0..cuda:{count - 1})",
                          f"set device: cuda:0 .. cuda:{count - 1}, or auto", cfg.device)


def check_run_paths(cfg: Config, plan: list) -> None:
    """ConfigError naming ``output`` when a run folder's path would be too long for the OS, or when a
    folder or record albench would write under the output root is a symbolic link (records would land
    in its target): the sweep folder and its dot-folders, the pretext cache, any folder down to a
    run folder, artifacts/, tensorboard/ and the records in them."""
    output = Path(cfg.output)
    for rc in plan:
        longest = len(os.fsencode(str(rc.run_dir))) + RUN_PATH_MARGIN
        if longest > MAX_PATH_BYTES:
            raise ConfigError("output", f"makes run folders such as {str(rc.run_dir)[:60]}... whose records' paths "
                              f"would be up to {longest} bytes long; paths stop at {MAX_PATH_BYTES}",
                              "shorten output (--out), the sweep name or the strategy labels", cfg.output)
    links = [p for rel in ROOT_DOT_FOLDERS if (p := first_link(output, rel)) is not None]
    links += [p for rel in SWEEP_DOT_FOLDERS if (p := first_link(output, Path(cfg.name) / rel)) is not None]
    for rc in plan:
        links += run_folder_links(output, Path(rc.run_dir))
    refuse_links(sorted(set(links)))


def load_config(path: str | Path | None = None, overrides: list[str] = (), *, check_data: bool = True) -> Config:
    """Read, override and validate a config; ``path=None`` loads the packaged quickstart."""
    raw = read_yaml(path if path is not None else quickstart_path())
    try:
        cfg = build_config(raw, overrides)
        if check_data:
            validate_environment(cfg)
    except ConfigError as exc:
        if writes_dataset_shorthand(raw, overrides):  # name the key the user wrote
            raise exc.respelled(DATASET_0, "dataset") from None
        raise
    return cfg


# the one dataset's key path as the checks spell it (datasets[0].root; datasets.0.root in --set errors)
DATASET_0 = r"\bdatasets(?:\[0\]|\.0)(?=[.:\s,;)']|$)"


def writes_dataset_shorthand(raw: dict, overrides: list[str] = ()) -> bool:
    """Whether the user names the sweep's one dataset as ``dataset:`` (the config file's shorthand, or
    ``--set dataset.KEY=...`` on a config that lists no ``datasets``), so errors should say
    ``dataset.root`` where the checks say ``datasets[0].root``."""
    if "datasets" in raw:
        return False
    return "dataset" in raw or any(str(o).split("=", 1)[0].split(".", 1)[0] == "dataset" for o in overrides)
