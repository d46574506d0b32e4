"""The sweep config: typed dataclasses, YAML loading, ``--set`` overrides and validation.

A config describes one sweep: datasets x strategies x seeds, with one model, one training protocol
and one AL schedule. :func:`build_config` checks everything that needs neither the disk nor the
resolved strategies (types, unknown keys, declared bounds, registry names, strategy and model
params); :func:`albench.validate.load_config` adds the checks that do (data roots, budget vs pool size,
a strategy's resolved params against the schedule). This module imports nothing that imports it.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from albench.errors import ConfigError
from albench.paths import PathText
from albench.typed import MAX_IMAGES, SEED, Bounds, from_dict, to_dict

DATA_ENV = "ALBENCH_DATA"
MAX_WORKERS = 1024  # local worker processes (as threads: more than any one machine's cores)


@dataclass
class DatasetConfig:
    """Which dataset, where its files are, and loader options (see ``albench list datasets``)."""

    name: str = "digits"
    root: Annotated[str | None, PathText()] = None  # None: $ALBENCH_DATA; not needed by embedded datasets
    download: bool = False  # only ever download when asked
    params: dict = field(default_factory=dict)

    def resolved_root(self) -> str | None:
        return self.root if self.root is not None else os.environ.get(DATA_ENV)


@dataclass
class ModelConfig:
    name: str = "small-cnn"
    params: dict = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Annotated[float, Bounds(gt=0, finite=True)] = 0.1
    momentum: Annotated[float, Bounds(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Bounds(ge=0, finite=True)] = 5e-4
    nesterov: bool = False
    # constant: weight_decay as given. per-label: weight_decay / n, n the cycle's labeled training
    # images, so the prior's strength stays fixed as data grows (Gal et al. 2017's official Keras code
    # sets l2(c / n) on its first dense layer). Either way a model's weight_decay_parameters(), when it
    # defines them, are the only ones decayed.
    weight_decay_scaling: Literal["constant", "per-label"] = "constant"


@dataclass
class ScheduleConfig:
    """Learning-rate schedule. ``multistep`` multiplies the lr by ``gamma`` at each milestone epoch;
    ``milestones: null`` means one milestone at 80% of the epochs (160 of 200, as the official repos)."""

    name: Literal["constant", "multistep", "cosine"] = "multistep"
    milestones: list[int] | None = None
    gamma: Annotated[float, Bounds(ge=0, finite=True)] = 0.1

    def resolved_milestones(self, epochs: int, *, configured: int | None = None) -> list[int]:
        """The milestone epochs of a ``epochs``-epoch training. ``configured`` (train.epochs), when a
        cycle trains longer than that (train.min_steps), stretches given milestones in proportion,
        so the schedule keeps its shape."""
        if self.milestones is None:
            return [max(1, round(0.8 * epochs))]
        if configured is None or configured == epochs:
            return list(self.milestones)
        return [max(1, round(m * epochs / configured)) for m in self.milestones]


@dataclass
class AugmentConfig:
    """Train-time augmentation, applied to whole batches on the training device.

    ``null`` for crop_padding / hflip means the dataset's default (e.g. no flip for digits).
    ``mean`` / ``std``: per-channel normalisation constants in 0..1 units (null: the dataset's own),
    applied after ``channel_order`` (``bgr`` reverses the channels first, as images read by OpenCV);
    the official-code quirks set them to a repository's constants.
    """

    crop_padding: int | None = None
    hflip: bool | None = None
    normalize: bool = True
    mean: list[float] | None = None
    std: list[float] | None = None
    channel_order: Literal["rgb", "bgr"] = "rgb"

    def check(self, path: str) -> None:
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ConfigError(f"{path}.crop_padding", "must be >= 0", f"set {path}.crop_padding to 0 or 4",
                              self.crop_padding)
        for key in ("mean", "std"):
            v = getattr(self, key)
            if v is not None and (len(v) == 0 or any(not math.isfinite(x) for x in v)):
                raise ConfigError(f"{path}.{key}", "must be a non-empty list of finite numbers, one per channel",
                                  f"set {path}.{key} to e.g. [0.4914, 0.4822, 0.4465], or null for the dataset's",
                                  v)
        if self.std is not None and any(x <= 0 for x in self.std):
            raise ConfigError(f"{path}.std", "every value must be > 0", f"set {path}.std to e.g. "
                              "[0.2470, 0.2435, 0.2616], or null for the dataset's", self.std)
        if (self.mean is None) != (self.std is None) or (self.mean is not None and len(self.mean) != len(self.std)):
            raise ConfigError(f"{path}.mean", "mean and std must be given together, with one value per channel each",
                              f"set both {path}.mean and {path}.std (same length), or both to null", self.mean)

    def resolve(self, mean, std, channels: int, path: str = "train.augment",
                where: str = "") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) the run normalises with: the configured ones, else the dataset's ``mean``/``std``.

        ConfigError when the configured constants or ``channel_order: bgr`` do not fit a dataset of
        ``channels`` channels (e.g. an official quirk's CIFAR-10 constants on 1-channel digits)."""
        if self.channel_order == "bgr" and channels != 3:
            raise ConfigError(f"{path}.channel_order", f"{where}'bgr' needs 3-channel images; the dataset has "
                              f"{channels}",
                              f"set {path}.channel_order: rgb (or drop the strategy quirk that sets it: list the "
                              "others under strategies[i].quirks)", self.channel_order)
        if self.mean is None:
            return tuple(mean), tuple(std)
        if len(self.mean) != channels:
            raise ConfigError(f"{path}.mean", f"{where}has {len(self.mean)} values but the dataset has {channels} "
                              "channels",
                              f"give one value per channel in {path}.mean and {path}.std, or null for the dataset's "
                              "(or drop the strategy quirk that sets them: list the others under strategies[i].quirks)",
                              self.mean)
        return tuple(float(x) for x in self.mean), tuple(float(x) for x in self.std)


@dataclass
class ValidationConfig:
    """Where the validation split for ``selection: best-on-validation`` comes from.

    ``train``: carved once from the train set before AL starts (the same images for every cycle and
    strategy; they never enter the pool). ``labeled``: carved from each cycle's labeled set (those
    labels are spent on validation, as in VAAL's protocol). ``size`` < 1 is a fraction, >= 1 a count.
    """

    source: Literal["train", "labeled"] = "train"
    size: Annotated[float, Bounds(gt=0, le=MAX_IMAGES)] = 0.1  # < 1: a fraction; >= 1: a count

    def check(self, path: str) -> None:
        if self.size >= 1 and not float(self.size).is_integer():  # 2.5 images would be cut to 2
            raise ConfigError(f"{path}.size", "is at least 1, so it counts images, and must be a whole number "
                              "(below 1 it is a fraction of the train set)",
                              f"set {path}.size to a whole count such as {int(self.size)}, or a fraction below 1",
                              self.size)


@dataclass
class TrainConfig:
    """The main-task training protocol, shared by every strategy of a sweep."""

    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 1024
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: Literal["fresh", "warm"] = "fresh"
    selection: Literal["final", "best-on-validation", "best-on-test"] = "final"
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    amp: Literal["auto", "off", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, off on CPU
    channels_last: bool = True  # NHWC activations: faster convolutions on CPU (oneDNN) and GPU alike
    compile: bool = False
    checkpoint_every: int = 0  # epochs between in-training checkpoints; 0: cycle boundaries only
    # How each epoch is cut into batches. keep-last: batch_size batches and a short last batch (only
    # a last batch of one image is dropped); drop-last: the short last batch is dropped (PyTorch's
    # drop_last); even: ceil(n / batch_size) batches of near-equal size (100 at 32: four of 25), so
    # no batch is a handful of images, which BatchNorm and SGD handle badly at small label counts.
    batching: Literal["keep-last", "drop-last", "even"] = "keep-last"
    # At least this many optimizer steps per cycle: a cycle whose labeled set gives fewer than
    # min_steps steps in train.epochs epochs trains for ceil(min_steps / steps per epoch) epochs
    # instead (schedule and Learning Loss's detach point stretched with it). 0: always train.epochs.
    # Each cycle's epochs and steps are recorded in cycles.csv.
    min_steps: Annotated[int, Bounds(ge=0)] = 0
    # How the test metric is measured. 0: one pass with dropout off. T >= 1: MC-dropout averaging,
    # the mean softmax of T stochastic passes (Gal et al. 2017's "dropout approximation at test
    # time"), masks seeded from the run's seed and cycle; cycles.csv then also records
    # value_single_pass, the metric of the pass with dropout off. Classification only.
    test_passes: Annotated[int, Bounds(ge=0)] = 0

    def check(self, path: str) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, key)
            if v < 1:
                raise ConfigError(f"{path}.{key}", "must be a positive integer", f"set {path}.{key} to e.g. 200", v)
        if self.checkpoint_every < 0:
            raise ConfigError(f"{path}.checkpoint_every", "must be >= 0",
                              f"set {path}.checkpoint_every to 0 (cycle boundaries only) or a number of epochs",
                              self.checkpoint_every)
        for m in self.schedule.milestones or []:
            if not 0 < m < self.epochs + 1:
                raise ConfigError(f"{path}.schedule.milestones", f"milestone {m} is outside 1..{self.epochs}",
                                  f"use epochs within train.epochs={self.epochs}", self.schedule.milestones)


@dataclass
class ALConfig:
    """The AL schedule: ``initial`` labels at cycle 0, then ``budget`` more per cycle.

    ``cycles`` counts train/evaluate rounds, the first included: the final labeled count is
    initial + budget * (cycles - 1).
    """

    initial: Annotated[int, Bounds(le=MAX_IMAGES)] = 1000  # images (the >= 1 check is check()'s)
    budget: Annotated[int, Bounds(le=MAX_IMAGES)] = 1000
    cycles: int = 10
    # The cold-start labels. strategy: the strategy's own initial query (uniform random unless it
    # overrides it). balanced: initial / num_classes images of every class, uniform within each class
    # from the run's seed, the same for every strategy of a seed; the engine reads the pool's labels
    # to draw them (Gal et al. 2017's "random but balanced" initial set).
    initial_selection: Literal["strategy", "balanced"] = "strategy"

    def check(self, path: str) -> None:
        for key in ("initial", "budget", "cycles"):
            v = getattr(self, key)
            if v < 1:
                raise ConfigError(f"{path}.{key}", "must be a positive integer", f"set {path}.{key} to e.g. 1000", v)

    @property
    def final_labeled(self) -> int:
        return self.initial + self.budget * (self.cycles - 1)


@dataclass
class StrategyConfig:
    name: str
    params: dict = field(default_factory=dict)
    label: str | None = None  # folder and legend name; needed when one strategy appears twice
    quirks: list[str] | None = None  # official-code switches; None: all under protocol 'official', none under 'paper'
    # 'quirks': expand this entry into one run per quirk ablation (see albench.ablation): official,
    # official minus each quirk (or group of quirks that only make sense together), and paper
    ablate: Literal["quirks"] | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class SlurmConfig:
    """Slurm resources for ``executor.name: slurm`` (each run is one array task)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    max_requeues: int = 3
    signal_delay_s: int = 120
    additional: dict = field(default_factory=dict)  # extra sbatch arguments, e.g. {exclude: node7}
    wait: bool = True  # wait for the jobs and print the summary; false: submit, return, see 'albench status'

    def check(self, path: str) -> None:
        for key in ("time_min", "cpus_per_task", "array_parallelism"):
            v = getattr(self, key)
            if v < 1:
                raise ConfigError(f"{path}.{key}", "must be a positive integer", f"set {path}.{key} to e.g. 1", v)
        if self.gpus_per_task < 0:
            raise ConfigError(f"{path}.gpus_per_task", "must be >= 0", f"set {path}.gpus_per_task to 0 or 1",
                              self.gpus_per_task)
        if self.max_requeues < 0:
            raise ConfigError(f"{path}.max_requeues", "must be >= 0", f"set {path}.max_requeues to e.g. 3",
                              self.max_requeues)
        if self.mem_gb is not None and not (math.isfinite(self.mem_gb) and self.mem_gb > 0):
            raise ConfigError(f"{path}.mem_gb", "must be a positive number of GB, or null for the partition's "
                              "default", f"set {path}.mem_gb to e.g. 4", self.mem_gb)
        # the time-limit signal comes signal_delay_s before the end: at or beyond time_min it comes at
        # once, and each requeue is spent in seconds; sbatch refuses a negative delay or one over 65535
        if self.signal_delay_s < 0:
            raise ConfigError(f"{path}.signal_delay_s", "must be >= 0 (seconds before the time limit that "
                              "Slurm signals the job to checkpoint and requeue)",
                              f"set {path}.signal_delay_s to e.g. 120", self.signal_delay_s)
        if self.signal_delay_s >= min(self.time_min * 60, 65536):
            limit = "time_min x 60" if self.time_min * 60 <= 65536 else "65536 (Slurm's largest signal delay)"
            raise ConfigError(f"{path}.signal_delay_s", f"must be below {limit} = "
                              f"{min(self.time_min * 60, 65536)} s (executor.slurm.time_min is {self.time_min}); "
                              "otherwise the time-limit signal arrives at once and every requeue is spent in seconds",
                              f"lower {path}.signal_delay_s (e.g. 120) or raise {path}.time_min",
                              self.signal_delay_s)


@dataclass
class ExecutorConfig:
    name: Literal["local", "debug", "slurm"] = "local"
    workers: Annotated[int, Bounds(ge=1, le=MAX_WORKERS)] = 1  # worker processes: one machine's worth
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def check(self, path: str) -> None:
        if self.workers < 1:
            raise ConfigError(f"{path}.workers", "must be a positive integer", "use --workers 1 or more",
                              self.workers)


@dataclass
class RecordConfig:
    """What each run saves beyond its per-cycle rows and queries."""

    embeddings: Annotated[int, Bounds(le=MAX_IMAGES)] = 5000  # final-model embeddings of this many random pool images (+ all labeled) for t-SNE; 0: none
    test_losses: bool = True  # per-test-image main-task loss of every cycle (artifacts/test_loss.npy)

    def check(self, path: str) -> None:
        if self.embeddings < 0:
            raise ConfigError(f"{path}.embeddings", "must be >= 0", f"set {path}.embeddings to 0 (none) or a count",
                              self.embeddings)


@dataclass
class TrackingConfig:
    """Optional experiment trackers, fed as the run goes (see bench/tracking). Off by default.

    ``tensorboard: true`` writes event files to each run's ``tensorboard/`` folder; ``mlflow: URI``
    logs each run to MLflow (a server, or a local folder such as ``mlruns``). Each needs its extra
    (``pip install 'albench[tensorboard]'`` / ``'albench[mlflow]'``), checked at config load.
    """

    tensorboard: bool = False
    mlflow: str | None = None

    def check(self, path: str) -> None:
        from albench.tracking import missing_package

        if self.mlflow is not None and not self.mlflow.strip():
            raise ConfigError(f"{path}.mlflow", "is empty", f"set {path}.mlflow to a tracking URI such as "
                              "'mlruns' (a local folder) or 'http://host:5000', or remove it", self.mlflow)
        if self.mlflow is not None:
            from albench.tracking import check_mlflow_uri

            check_mlflow_uri(self.mlflow, f"{path}.mlflow")
        for name, on in (("tensorboard", self.tensorboard), ("mlflow", self.mlflow is not None)):
            fix = missing_package(name) if on else None
            if fix is not None:
                raise ConfigError(f"{path}.{name}", f"asks for {name} tracking, but the {name} package is not "
                                  "installed", f"{fix}, or remove {path}.{name}", getattr(self, name))


@dataclass
class Config:
    """A whole sweep. ``datasets`` x ``strategies`` x ``seeds`` runs, one folder each."""

    name: str = "sweep"
    protocol: Literal["paper", "official"] = "paper"
    datasets: list[DatasetConfig] = field(default_factory=lambda: [DatasetConfig()])
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    al: ALConfig = field(default_factory=ALConfig)
    strategies: list[StrategyConfig] = field(default_factory=lambda: [StrategyConfig("random")])
    seeds: list[SEED] = field(default_factory=lambda: [0, 1, 2])
    output: Annotated[str, PathText("set output to e.g. 'results' (or pass --out DIR)")] = "results"
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    device: str = "auto"  # auto: CUDA when present, else CPU; or 'cpu', 'cuda', 'cuda:1'
    threads: int | None = None  # torch CPU threads per run; None: cores / workers
    # the strategy label reports compare against (e.g. wall-clock x Random); None: the strategy named
    # 'random' when the sweep has one (the label 'random' first), else no baseline. See bench/plan.py.
    baseline: str | None = None

    def check(self, path: str) -> None:
        check_folder_name(self.name, "name", "set name to e.g. 'cifar10-baselines'")
        if not self.output or "\0" in self.output:
            raise ConfigError("output", "must be a folder path (not empty, no NUL byte)",
                              "set output to e.g. 'results' (or pass --out DIR)", self.output)
        if not self.seeds:
            raise ConfigError("seeds", "is empty", "list at least one seed, e.g. seeds: [0, 1, 2]", self.seeds)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", "has duplicates", "list each seed once", self.seeds)
        if any(s < 0 for s in self.seeds):
            raise ConfigError("seeds", "must be non-negative integers", "use seeds such as [0, 1, 2]", self.seeds)
        if any(s >= 2 ** 63 for s in self.seeds):  # generators take 64-bit seeds
            raise ConfigError("seeds", "must be below 2**63", "use seeds such as [0, 1, 2]", self.seeds)
        if len(self.seeds) > MAX_SEEDS:
            raise ConfigError("seeds", f"lists more than {MAX_SEEDS} seeds", "list fewer seeds", len(self.seeds))
        if not self.strategies:
            raise ConfigError("strategies", "is empty", "list at least one strategy, e.g. strategies: [random]")
        for i, st in enumerate(self.strategies):  # the key names the run's folder
            field_ = f"strategies[{i}].label" if st.label is not None else f"strategies[{i}].name"
            check_folder_name(st.label if st.label is not None else st.name, field_,  # an empty label too
                              f"set strategies[{i}].label to e.g. 'entropy-10k', or remove it")
        keys = [s.key for s in self.strategies]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError("strategies", f"{dup[0]!r} appears more than once",
                              "give each repeated strategy a distinct 'label'", keys)
        if self.baseline is not None and self.baseline not in keys:
            raise ConfigError("baseline", "is not one of the sweep's strategy labels",
                              f"set baseline to one of {', '.join(keys)}, or remove it", self.baseline)
        if not self.datasets:
            raise ConfigError("datasets", "is empty", "name a dataset, e.g. dataset: {name: digits}")
        for i, d in enumerate(self.datasets):
            check_folder_name(d.name, f"datasets[{i}].name", "see 'albench list datasets'")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError("datasets", "names a dataset twice", "list each dataset once", names)
        if not DEVICE.fullmatch(self.device):
            raise ConfigError("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a device index)",
                              "set device: auto", self.device)
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ConfigError("threads", "must be an integer in 1..1024 or null", "set threads: null (cores / workers)",
                              self.threads)


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_folder_name(value: str, field: str, fix: str) -> None:
    """ConfigError naming ``field`` unless ``value`` is one safe path component: not empty, no '/',
    '\\' or NUL byte, and not starting with '.' (so never '.' or '..'): the sweep name, dataset names
    and strategy labels each become one folder under the output root, never a path out of it."""
    if not value or value.startswith(".") or any(c in value for c in "/\\\0"):
        raise ConfigError(field, "must be a single folder name: not empty, no '/', '\\' or NUL byte, "
                          "not starting with '.'", fix, value)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:  # file systems stop at 255 bytes a name
        raise ConfigError(field, f"is longer than {MAX_NAME_BYTES} bytes, too long for a folder name", fix, value)


# ----------------------------------------------------------------------------------------------
# Loading


# A sweep config is a few KiB; these bounds only stop hostile or mistaken input (a multi-GB file, a
# "billion laughs" alias bomb) before it can exhaust time or memory.
MAX_CONFIG_BYTES = 256 * 1024  # the pure-Python parser reads this in about 2 s at worst
MAX_NAME_BYTES = 128  # of a sweep name, dataset name or strategy label: each becomes one folder
MAX_SEEDS = 1000  # seeds per sweep: each is one run per dataset and strategy
MAX_YAML_NODES = 100_000  # nodes of the document with every alias expanded where it is used


class YamlRefused(ValueError):
    """A YAML document albench refuses to read (the subclasses say why)."""


class YamlTooComplex(YamlRefused):
    """A YAML document whose alias expansion (or plain size) exceeds :data:`MAX_YAML_NODES`, or whose
    aliases refer to themselves, or that nests too deeply to parse."""


class DuplicateKey(YamlRefused):
    """A mapping that gives one key twice: YAML loaders keep the last silently, so the config would not
    be what runs (a second ``al:`` block without ``cycles`` would reset it to the default)."""

    def __init__(self, key: str, first: int, second: int) -> None:
        self.key, self.first, self.second = key, first, second
        super().__init__(f"gives the key {key!r} twice (lines {first} and {second}); YAML would keep the "
                         "second silently")


_MERGE_TAG = "tag:yaml.org,2002:merge"


def check_duplicate_keys(root: yaml.Node) -> None:
    """DuplicateKey for the first mapping of the composed document ``root`` that holds a scalar key
    twice (merge keys ``<<`` excepted: keys they bring in may be overridden); the key is named by its
    dotted path."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen_nodes: set[int] = set()
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:  # an alias: its anchor was checked once
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    ident = (key.tag, key.value)
                    line = key.start_mark.line + 1
                    if ident in first_line:
                        raise DuplicateKey(f"{where}.{name}" if where else name, first_line[ident], line)
                    first_line[ident] = line
                stack.append((value, f"{where}.{name}" if where else name))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def expanded_node_count(root: yaml.Node, limit: int | None = None) -> int:
    """How many nodes the composed document ``root`` has once every alias is replaced by a copy of
    what it names; YamlTooComplex beyond ``limit`` or for an alias inside its own anchor. Shared
    nodes are counted once per use but visited once, so a bomb is measured without expanding it."""
    limit = MAX_YAML_NODES if limit is None else limit
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # an explicit stack: a deeply nested document cannot exhaust Python's recursion
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > limit:
                raise YamlTooComplex(f"expands to more than {limit} YAML nodes once its aliases are "
                                     "filled in (an alias bomb?)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlTooComplex("holds an alias that refers to itself (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that measures the composed document before building any Python object."""

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            expanded_node_count(node)
            check_duplicate_keys(node)
        return node


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing (YamlTooComplex) documents that expand beyond
    :data:`MAX_YAML_NODES` nodes, recursive aliases and nesting too deep to parse, and (DuplicateKey)
    mappings that give a key twice."""
    try:
        # the pure-Python SafeLoader on purpose: libyaml's composer recurses in C and crashes the
        # process on deeply nested input, where Python's raises RecursionError
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlTooComplex("nests too deeply to parse") from None
    except YamlRefused:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise YamlTooComplex(f"holds a value that cannot be read ({str(exc).splitlines()[0][:100]})") from None


def quickstart_path() -> Path:
    """The packaged default config that ``albench run`` uses when given no CONFIG."""
    return Path(str(resources.files("albench.configs").joinpath("quickstart.yaml")))


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``KEY=VALUE`` into a key path and a YAML-parsed value."""
    if "=" not in item:
        raise ConfigError("--set", "must look like KEY=VALUE", "write e.g. --set train.epochs=10", item)
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", "has an empty key", "write e.g. --set train.epochs=10", item)
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except YamlRefused as exc:
        raise ConfigError(f"--set {key}", str(exc), "pass a plain value", raw[:80]) from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(raw: dict, parts: list[str], value: Any) -> None:
    """Set ``raw[parts[0]][parts[1]]... = value``, creating mappings and indexing lists by number."""
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(where, f"list index out of range (the list has {len(node)} items)",
                                  "use an index from 0", part)
            idx = int(part)
            if last:
                node[idx] = value
            else:
                if isinstance(node[idx], str):  # strategies: [random] shorthand -> mapping
                    node[idx] = {"name": node[idx]}
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(".".join(parts[:depth]), "is not a mapping, so it has no sub-keys",
                              f"set {'.'.join(parts[:depth])} itself", node)


def _normalise(raw: dict) -> dict:
    """Accept the friendly shorthands: ``dataset:`` for one dataset, strategy names as strings,
    ``strategies: all`` and ``seeds: N`` for seeds 0..N-1."""
    raw = dict(raw)
    if "dataset" in raw:
        if "datasets" in raw:
            raise ConfigError("dataset", "is given together with 'datasets'", "use one of the two keys")
        ds = raw.pop("dataset")
        raw["datasets"] = [{"name": ds} if isinstance(ds, str) else ds]
    if isinstance(raw.get("datasets"), list):
        raw["datasets"] = [{"name": d} if isinstance(d, str) else d for d in raw["datasets"]]
    strategies = raw.get("strategies")
    if strategies == "all":
        from albench.strategies.registry import available

        raw["strategies"] = [{"name": n} for n in available()]
    elif isinstance(strategies, str):
        raw["strategies"] = [{"name": s.strip()} for s in strategies.split(",") if s.strip()]
    elif isinstance(strategies, list):
        raw["strategies"] = [{"name": s} if isinstance(s, str) else s for s in strategies]
    seeds = raw.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError("seeds", "must be a positive count or a list", "set seeds: 3 or seeds: [0, 1, 2]",
                              seeds)
        if seeds > MAX_SEEDS:  # the list is built here: a typo such as 1e9 must not exhaust memory first
            raise ConfigError("seeds", f"asks for more than {MAX_SEEDS} seeds", "set a count such as seeds: 5",
                              seeds)
        raw["seeds"] = list(range(seeds))
    return raw


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML config file; ConfigError when missing, oversized or malformed.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES` (checked before it is read;
    a folder or a FIFO is refused unopened), and the document is parsed by :func:`load_yaml_text`,
    which refuses alias bombs, recursive aliases and keys given twice.
    """
    from albench.paths import read_input_file

    p = Path(path) if not isinstance(path, str) else path
    blob = read_input_file(p, "CONFIG", MAX_CONFIG_BYTES, "pass the path of a YAML config, or none for the quickstart")
    p = Path(p)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("CONFIG", f"is not UTF-8 text (byte {exc.start})", f"save {p} as UTF-8 YAML",
                          str(p)) from None
    try:
        data = load_yaml_text(text)
    except DuplicateKey as exc:
        raise ConfigError("CONFIG", f"{p} {exc}", f"keep one '{exc.key.rsplit('.', 1)[-1]}:' (merge the two "
                          "blocks into one)") from None
    except YamlTooComplex as exc:
        raise ConfigError("CONFIG", str(exc), f"write {p} as plain 'key: value' lines (no aliases that multiply, "
                          "no deep nesting)", str(p)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("CONFIG", f"is not valid YAML{where}", f"fix the syntax of {p}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("CONFIG", "must be a YAML mapping at top level", f"write {p} as 'key: value' lines")
    return data


def build_config(raw: dict, overrides: list[str] = ()) -> Config:
    """Validate a raw mapping (+ ``KEY=VALUE`` overrides) into a :class:`Config`.

    Runs every check that does not touch data files; see :func:`validate_environment` for those.
    """
    raw = _normalise(copy.deepcopy(raw))
    for item in overrides:
        parts, value = parse_override(item)
        if parts[0] == "dataset":  # shorthand for the only dataset
            if len(raw.get("datasets") or []) > 1:
                raise ConfigError("--set", "'dataset' is ambiguous: the config lists several datasets",
                                  "use datasets.N.KEY=VALUE", item)
            parts = ["datasets", "0"] + parts[1:]
            raw.setdefault("datasets", [{}])
        apply_override(raw, parts, value)
        raw = _normalise(raw)
    cfg = from_dict(Config, raw)
    _check_registries(cfg)
    return cfg


def _check_registries(cfg: Config) -> None:
    import difflib

    from albench.data.registry import dataset_names
    from albench.models.registry import has_model, model_names, validate_model_params
    from albench.strategies.registry import get_strategy, strategy_names

    for i, ds in enumerate(cfg.datasets):
        if ds.name not in dataset_names():
            close = difflib.get_close_matches(ds.name, dataset_names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"datasets[{i}].name", "unknown dataset",
                              f"{hint}see 'albench list datasets'", ds.name)
    if not has_model(cfg.model.name):  # a family name (timm:<name>) is checked by its family
        close = difflib.get_close_matches(cfg.model.name, model_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError("model.name", "unknown model", f"{hint}see 'albench list models'", cfg.model.name)
    validate_model_params(cfg.model.name, cfg.model.params, "model.params")
    for i, st in enumerate(cfg.strategies):
        if st.name not in strategy_names():
            close = difflib.get_close_matches(st.name, strategy_names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"strategies[{i}].name", "unknown strategy",
                              f"{hint}see 'albench list strategies'", st.name)
        cls = get_strategy(st.name)
        cls.validate_params(st.params, f"strategies[{i}].params")
        known = [q.name for q in cls.quirks]
        for q in st.quirks or []:
            if q not in known:
                raise ConfigError(f"strategies[{i}].quirks", f"{st.name!r} has no quirk {q!r}",
                                  f"use some of: {', '.join(known) or '(none: this strategy has no quirks)'}", q)
        for q in cls.quirks:  # a group's quirks only make sense together: all of them or none
            members = [m.name for m in cls.quirks if q.group and m.group == q.group]
            if st.quirks is not None and q.name in st.quirks and not set(members) <= set(st.quirks):
                missing = [m for m in members if m not in st.quirks]
                raise ConfigError(f"strategies[{i}].quirks", f"{st.name!r}'s quirks {', '.join(members)} only make "
                                  f"sense together (group {q.group!r}); {', '.join(missing)} is not listed",
                                  f"list all of {', '.join(members)}, or none of them", st.quirks)
    from albench.data.registry import get_dataset
    from albench.models.registry import model_entry

    for i, ds in enumerate(cfg.datasets):  # every strategy and the model must support each dataset's task
        task = get_dataset(ds.name).task
        for j, st in enumerate(cfg.strategies):
            tasks = get_strategy(st.name).tasks
            if task not in tasks:
                raise ConfigError(f"strategies[{j}].name", f"strategy {st.name!r} does not apply to {task} "
                                  f"(dataset {ds.name!r}); it supports {', '.join(sorted(tasks))}",
                                  "remove it from this sweep or pick a strategy listed for that task", st.name)
        if task not in model_entry(cfg.model.name).tasks:
            raise ConfigError("model.name", f"model {cfg.model.name!r} does not do {task} (dataset {ds.name!r})",
                              "pick a model for that task (albench list models)", cfg.model.name)


def config_to_dict(cfg: Config) -> dict:
    return to_dict(cfg)
