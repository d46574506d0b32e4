"""From a sweep config to a plan of runs: one :class:`RunConfig` per dataset x strategy x seed.

Protocol resolution happens here. Under ``protocol: official`` every quirk a strategy declares is
switched on (unless its ``quirks`` list says otherwise); each quirk's params and training overrides
are applied, and the run records which quirks and which flags it carries. A strategy entry with
``ablate: quirks`` first expands into its ablation variants (:mod:`albench.ablation`), each resolved
with its explicit quirk set and recorded with its own protocol and ``ablation`` record.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from albench.ablation import expand_strategies
from albench.config import (ALConfig, Config, DatasetConfig, ModelConfig, RecordConfig, StrategyConfig, TrackingConfig,
                          TrainConfig, apply_override)
from albench.errors import ConfigError
from albench.records import PHASES, default_baseline, run_id
from albench.typed import NO_DEFAULT, SEED, from_dict, to_dict

FLAG_BEST_ON_TEST = "best-on-test"  # the reported number was selected on the test set


@dataclass
class RunConfig:
    """Everything one run needs; written to the run's config.yaml and enough to rerun it."""

    sweep: str
    output: str
    dataset: DatasetConfig
    model: ModelConfig
    train: TrainConfig
    al: ALConfig
    strategy: StrategyConfig
    seed: SEED
    protocol: str = "paper"
    quirks: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    record: RecordConfig = field(default_factory=RecordConfig)
    device: str = "auto"
    threads: int | None = None
    baseline: str | None = None  # the sweep's baseline strategy label (see sweep_baseline); None: none
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # dashboards only: no effect on numbers
    ablation: dict | None = None  # the quirk ablation this run belongs to (albench.ablation); None: none
    # --stop-at-labels: leave the run unfinished (resumable) once a cycle has this many labels; a
    # staging choice of one invocation, never part of the protocol (drift ignores it)
    stop_at_labels: int | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.sweep / self.dataset.name / self.strategy.key / f"seed-{self.seed}"

    @property
    def run_id(self) -> str:
        return run_id(self.dataset.name, self.strategy.key, self.seed)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        return from_dict(cls, data)

    def identity(self) -> dict:
        """What run.json holds: the keys a results table groups by, and what reports need to read the
        records without the strategy code (the sweep's baseline label, the timed phases and the
        documentation of each active quirk)."""
        return {
            "sweep": self.sweep, "dataset": self.dataset.name, "strategy": self.strategy.key,
            "strategy_name": self.strategy.name, "seed": self.seed, "protocol": self.protocol,
            "quirks": list(self.quirks), "flags": list(self.flags), "metric": None,
            "baseline": self.baseline, "phases": list(PHASES),
            "quirk_docs": quirk_docs(self.strategy.name, self.quirks),
            **({"ablation": self.ablation} if self.ablation is not None else {}),
        }


def quirk_docs(strategy_name: str, active: list[str]) -> dict[str, str]:
    """{quirk name: its documentation} for each of ``active``, as the strategy declares it."""
    from albench.strategies.registry import get_strategy

    cls = get_strategy(strategy_name)
    return {name: cls.quirk(name).doc for name in active}


def sweep_baseline(cfg: Config) -> str | None:
    """The strategy label the sweep's reports compare against (recorded in every run.json).

    ``cfg.baseline`` when set (config load checked it names a strategy label); else the strategy
    named ``random`` (the label ``random`` first, then the first label in sorted order), the rule
    reports applied before runs recorded a baseline; None when the sweep has no such strategy.
    """
    if cfg.baseline is not None:
        return cfg.baseline
    return default_baseline((v.key, v.strategy.name) for v in expand_strategies(cfg))


def resolve_strategy(st: StrategyConfig, protocol: str, train: TrainConfig, path: str) -> tuple[
        StrategyConfig, TrainConfig, list[str], list[str]]:
    """Apply the protocol's quirks; return (strategy with full params, run train config, quirks, flags)."""
    from albench.strategies.registry import get_strategy

    cls = get_strategy(st.name)
    active = list(st.quirks) if st.quirks is not None else (
        [q.name for q in cls.quirks if q.official] if protocol == "official" else [])
    params = {k: d for k, (_, d) in cls.param_types().items() if d is not NO_DEFAULT}
    train_raw = to_dict(train)
    flags = []
    for name in active:
        q = cls.quirk(name)
        params.update(q.params)
        for key, value in q.train.items():
            apply_override(train_raw, key.split("."), copy.deepcopy(value))
        # one spelling per flag (kebab-case, as the harness's own): the quirk best_on_test and the
        # selection it sets are one statement, recorded once as 'best-on-test'
        if q.flag and name.replace("_", "-") not in flags:
            flags.append(name.replace("_", "-"))
    params.update(cls.validate_params(st.params, f"{path}.params"))  # explicit params win
    run_train = from_dict(TrainConfig, train_raw, "train")
    if run_train.selection == "best-on-test" and FLAG_BEST_ON_TEST not in flags:
        flags.append(FLAG_BEST_ON_TEST)
    resolved = StrategyConfig(name=st.name, params=params, label=st.label, quirks=active)
    return resolved, run_train, active, flags


def make_plan(cfg: Config) -> list[RunConfig]:
    """Every run of the sweep, in dataset, strategy (an ablated entry: its variants), seed order."""
    runs = []
    variants = expand_strategies(cfg)
    baseline = sweep_baseline(cfg)
    for ds in cfg.datasets:
        for v in variants:
            strategy, train, quirks, flags = resolve_strategy(v.strategy, v.protocol, cfg.train,
                                                              f"strategies[{v.index}]")
            for seed in cfg.seeds:
                runs.append(RunConfig(
                    sweep=cfg.name, output=cfg.output, dataset=copy.deepcopy(ds), model=copy.deepcopy(cfg.model),
                    train=copy.deepcopy(train), al=copy.deepcopy(cfg.al), strategy=copy.deepcopy(strategy),
                    seed=seed, protocol=v.protocol, quirks=list(quirks), flags=list(flags),
                    record=copy.deepcopy(cfg.record), device=cfg.device, threads=cfg.threads, baseline=baseline,
                    tracking=copy.deepcopy(cfg.tracking), ablation=copy.deepcopy(v.ablation),
                ))
    return runs


def check_output_writable(output: str | Path) -> None:
    """ConfigError unless the output root can be created and written to."""
    import os
    import tempfile

    root = Path(output)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError("output", f"is not writable ({exc.strerror})", "pass --out with a folder you can write to",
                          str(output)) from None
