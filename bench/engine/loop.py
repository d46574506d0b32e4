"""The cycle loop of one run: initial query -> train -> evaluate -> query -> train -> ...

The loop knows strategies only through the :class:`~albench.strategies.base.Strategy` interface. It times
each phase, records every cycle atomically, checkpoints at every cycle boundary (and every
``train.checkpoint_every`` epochs) and resumes from the last checkpoint, ending equal to an
uninterrupted run: every random draw comes from a generator derived from (seed, purpose, cycle).
What a checkpoint holds, and its layout, is :class:`~albench.engine.state.LoopState`'s business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from albench.cached import CacheUse, collect_uses
from albench.data.augment import BatchTransform
from albench.data.fingerprint import pool_fingerprint
from albench.data.registry import load_dataset
from albench.divergence import at_cycle
from albench.engine.device import configure_torch, limit_thread_pools, resolve_device, use_amp
from albench.engine.inference import compute_outputs, evaluate, seed_stochastic
from albench.engine.malloc import tune_malloc
from albench.engine.state import LoopState, PartialCycle
from albench.engine.timer import PHASES, PhaseTimer
from albench.engine.train import FitResult, Trainer, cycle_epochs, steps_per_epoch
from albench.env import fingerprint
from albench.errors import AlbenchError, ConfigError
from albench.plan import RunConfig
from albench.records import RunRecorder
from albench.tasks import make_task
from albench.toolkit.device import cpu_state, data_device
from albench.toolkit.seeding import derive_seed, numpy_rng, seed_global, torch_generator
from albench.tracking import Tracker, make_tracker
from albench.features import FeatureTransform, FrozenFeatures
from albench.models.registry import build_model, model_entry
from albench.strategies.base import Inputs, ModelInfo, Need, PoolState, PrepareContext, Strategy
from albench.strategies.registry import make_strategy

EventFn = Callable[[dict], None]


@dataclass
class RunOutcome:
    run_id: str
    state: str  # complete | skipped | failed | busy | damaged | changed | stopped (--stop-at-labels)
    error: str | None = None
    value: float | None = None  # final-cycle metric


class SelectionError(AlbenchError):
    """A strategy returned an invalid query."""


def check_selection(new: np.ndarray, size: int, labeled: np.ndarray, pool_size: int, who: str) -> np.ndarray:
    """``new`` as int64 if it is ``size`` distinct, in-range, not-yet-labeled pool indices."""
    new = np.asarray(new)
    if new.ndim != 1 or new.shape[0] != size:
        raise SelectionError(f"strategy {who!r} returned {new.shape} indices; it must return {size}")
    if not np.issubdtype(new.dtype, np.integer):
        raise SelectionError(f"strategy {who!r} returned {new.dtype} indices; they must be integers")
    new = new.astype(np.int64)
    if new.min(initial=0) < 0 or new.max(initial=0) >= pool_size:
        raise SelectionError(f"strategy {who!r} returned indices outside the pool [0, {pool_size})")
    if len(np.unique(new)) != size:
        raise SelectionError(f"strategy {who!r} returned duplicate indices")
    if np.isin(new, labeled).any():
        raise SelectionError(f"strategy {who!r} queried images that are already labeled")
    return new


def balanced_initial(targets: torch.Tensor, size: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted pool indices of ``size / num_classes`` images of each class, uniform without replacement
    within each class (classes drawn in order 0..C-1 from ``rng``). ConfigError naming
    ``al.initial`` when ``size`` is not a multiple of the classes or a class has too few images."""
    if targets.ndim != 1:
        raise ConfigError("al.initial_selection", "'balanced' needs one label per image (classification)",
                          "set al.initial_selection: strategy", "balanced")
    per, rest = divmod(size, num_classes)
    if rest:
        raise ConfigError("al.initial", f"a balanced initial set needs a multiple of the {num_classes} classes",
                          f"set al.initial to e.g. {max(1, per) * num_classes}", size)
    y = targets.cpu().numpy()
    picks = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        if len(members) < per:
            raise ConfigError("al.initial", f"class {c} has {len(members)} images, fewer than the {per} a balanced "
                              "initial set takes from each", "lower al.initial or set al.initial_selection: strategy",
                              size)
        picks.append(rng.choice(members, size=per, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


class RunContext:
    """The per-run objects the cycle loop works with (data, task, strategy, devices, generators)."""

    def __init__(self, rc: RunConfig, events: EventFn | None) -> None:
        self.rc = rc
        self.events = events or (lambda e: None)
        self.recorder = RunRecorder(rc.run_dir)
        self.device = resolve_device(rc.device)
        self.threads = configure_torch(self.device, rc.threads)
        self.thread_pools = limit_thread_pools(self.threads)  # BLAS and OpenMP too (env.json thread_pools)
        # cache entries the engine itself uses before prepare (albench.cached.collect_uses around the work,
        # in a phase charged to cycle 0); recorded in run.json cache_uses with prepare's own
        self.cache_uses: list[CacheUse] = []
        tune_malloc()  # process-wide: later runs in this process reuse freed buffers too
        self.amp = use_amp(self.device, rc.train.amp)
        self.ds = load_dataset(rc.dataset)
        self.task = make_task(self.ds.task, self.ds.num_classes, self.ds.ignore_index)
        self.strategy: Strategy = make_strategy(rc.strategy.name, rc.strategy.params)
        if self.ds.task not in self.strategy.tasks:
            raise ConfigError("strategies", f"strategy {rc.strategy.name!r} does not support {self.ds.task}",
                              f"use one of its tasks ({', '.join(sorted(self.strategy.tasks))}) or another strategy",
                              rc.strategy.name)
        self.needs = self.strategy.needs_for(self.ds.task)  # what the engine computes for each query
        self.tracker: Tracker = make_tracker(rc.tracking, run_dir=rc.run_dir, sweep=rc.sweep, run_id=rc.run_id)
        self._split()
        aug = rc.train.augment
        # the run's normalisation: the dataset's constants unless the config (or a quirk) sets others
        self.mean, self.std = aug.resolve(self.ds.mean, self.ds.std, self.ds.channels)
        self.channel_order = aug.channel_order
        # a model over frozen features reads rows of a feature matrix (load_features, in the pretext
        # phase) as they are: no augmentation, no normalisation, no NHWC layout
        self.reads_features = model_entry(rc.model.name).inputs == "features"
        self.train_cfg = replace(rc.train, channels_last=False) if self.reads_features else rc.train
        self.features: FrozenFeatures | None = None
        self.in_features: int | None = None
        if self.reads_features:
            self.transform = FeatureTransform()
        else:
            self.transform = BatchTransform(
                self.mean, self.std,
                crop_padding=self.ds.crop_padding if aug.crop_padding is None else aug.crop_padding,
                hflip=self.ds.hflip if aug.hflip is None else aug.hflip,
                normalize=aug.normalize, bgr=aug.channel_order == "bgr", device=self.device)
        # a model over features gets its inputs in load_features; the images stay where they are (for
        # strategies that read them: PoolState.images)
        data_dev = data_device(self.device, self.pool_images) if not self.reads_features else torch.device("cpu")
        self.train_inputs = self.ds.x_train  # every train row (the validation split carved from train included)
        self.x = self.pool_images.to(data_dev)
        self.y = self.pool_targets.to(data_dev)
        self.x_test = self.ds.x_test.to(data_dev)
        self.y_test = self.ds.y_test.to(data_dev)
        self._fingerprints: dict[str, str] = {}

    def fingerprint(self, which: str) -> str:
        """The fingerprint of the ``pool``, ``train`` or ``test`` images (computed once per run)."""
        if which == "pool" and self.val_train_idx is None:
            which = "train"  # the pool is the whole train split
        if which not in self._fingerprints:
            images = {"pool": self.pool_images, "train": self.ds.x_train, "test": self.ds.x_test}[which]
            self._fingerprints[which] = pool_fingerprint(images)
        return self._fingerprints[which]

    def load_features(self) -> dict:
        """For a model over frozen features: compute or read them through the cache (the use is
        reported to the open :func:`~albench.cached.collect_uses`), make them the model's inputs, and
        return what run.json records about them (``features``)."""
        from albench.features import frozen_features, parse_source
        from albench.toolkit.seeding import seeded_init

        rc = self.rc
        ff = frozen_features(parse_source(rc.model.params.get("features")), x_train=self.ds.x_train,
                             x_test=self.ds.x_test, train_fingerprint=self.fingerprint("train"),
                             test_fingerprint=self.fingerprint("test"), mean=self.mean, std=self.std,
                             num_classes=self.ds.num_classes, seed=rc.seed, device=self.device, amp=self.amp,
                             cache_root=Path(rc.output) / ".cache", log=self.recorder.log,
                             progress=_epoch_events(self))
        self.features, self.in_features = ff, ff.dim
        train = torch.from_numpy(ff.train)
        pool = train if self.val_train_idx is None else train[torch.from_numpy(self.pool_map)]
        data_dev = data_device(self.device, train)
        self.train_inputs = train
        self.x = pool.to(data_dev)
        self.y = self.pool_targets.to(data_dev)
        self.x_test = torch.from_numpy(ff.test).to(data_dev)
        self.y_test = self.ds.y_test.to(data_dev)
        with seeded_init(0):  # what the model embeds, from a throwaway instance (the run's RNG untouched)
            net = build_model(rc.model.name, num_classes=self.ds.num_classes, in_channels=self.ds.channels,
                              image_size=self.ds.image_size, params=rc.model.params, in_features=ff.dim)
        return {**ff.info, "embedding": getattr(net, "embedding_source", None), "embedding_dim": int(net.embedding_dim)}

    def pool_features(self) -> np.ndarray | None:
        """The frozen features of the pool's rows (float32, pool order), or None for a model over images."""
        return None if self.features is None else self.x.cpu().numpy()

    def _split(self) -> None:
        """The pool, minus a validation split carved from train when the protocol asks for one."""
        rc, n = self.rc, self.ds.x_train.shape[0]
        self.val_train_idx = None
        if rc.train.selection == "best-on-validation" and rc.train.validation.source == "train":
            size = rc.train.validation.size
            k = int(round(size * n)) if size < 1 else int(size)
            self.val_train_idx = np.sort(numpy_rng(rc.seed, "validation").choice(n, size=k, replace=False))
            mask = np.ones(n, dtype=bool)
            mask[self.val_train_idx] = False
            self.pool_map = np.flatnonzero(mask)
        else:
            self.pool_map = np.arange(n)
        if self.val_train_idx is None:  # the whole train set: no copy (it may be memory-mapped)
            self.pool_images, self.pool_targets = self.ds.x_train, self.ds.y_train
        else:
            pm = torch.from_numpy(self.pool_map)
            self.pool_images = self.ds.x_train[pm]
            self.pool_targets = self.ds.y_train[pm]

    # ------------------------------------------------------------------ pieces
    def pool_state(self, labeled: np.ndarray) -> PoolState:
        return PoolState(images=self.pool_images, labeled=labeled,
                         labeled_targets=self.pool_targets[torch.from_numpy(labeled)],
                         num_classes=self.ds.num_classes, task=self.ds.task)

    def model_info(self, m) -> ModelInfo:
        return ModelInfo(stage_channels=tuple(m.stage_channels), embedding_dim=int(m.embedding_dim),
                         num_classes=self.ds.num_classes, in_channels=self.ds.channels, image_size=self.ds.image_size)

    def build(self, cycle: int, prev: dict | None):
        """The model and auxiliary module for ``cycle``: fresh (seeded per cycle) or warm from ``prev``."""
        rc = self.rc
        seed_global(rc.seed, "init", cycle)
        model = build_model(rc.model.name, num_classes=self.ds.num_classes, in_channels=self.ds.channels,
                            image_size=self.ds.image_size, params=rc.model.params, in_features=self.in_features)
        aux = self.strategy.auxiliary(self.model_info(model))
        if rc.train.init == "warm" and prev is not None:
            model.load_state_dict(prev["model"])
            if aux is not None and prev.get("aux") is not None:
                aux.load_state_dict(prev["aux"])
        model.to(self.device)
        if self.train_cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if aux is not None:
            aux.to(self.device)
        return model, aux

    def restore(self, state: dict | None):
        """Model and aux of a finished cycle, from CPU state dicts."""
        if state is None:
            return None, None
        model, aux = self.build(-1, None)
        model.load_state_dict(state["model"])
        if aux is not None and state.get("aux") is not None:
            aux.load_state_dict(state["aux"])
        return model, aux

    def evaluate(self, model, x, y, per_item=False, passes: int = 0, seed: int | None = None):
        return evaluate(model=model, task=self.task, x=x, y=y, transform=self.transform,
                        batch_size=self.rc.train.eval_batch_size, device=self.device, amp=self.amp,
                        channels_last=self.train_cfg.channels_last, per_item=per_item, passes=passes, seed=seed)


def execute_run(rc: RunConfig, *, events: EventFn | None = None) -> RunOutcome:
    """Run (or resume, or skip if complete) one run; never raises for a failure inside the run.

    State ``busy``: another live process holds the run's lock; ``damaged``/``changed``: the folder
    cannot be resumed as this config (see :func:`albench.integrity.claim`); neither is touched."""
    from albench.integrity import claim

    with claim(rc) as refused:
        if refused is not None:
            return RunOutcome(rc.run_id, refused[0], error=refused[1])
        recorder = RunRecorder(rc.run_dir)
        if recorder.is_complete():
            return RunOutcome(rc.run_id, "skipped")
        ctx = None
        try:
            ctx = RunContext(rc, events)
            value = _cycle_loop(ctx)
            return RunOutcome(rc.run_id, "complete", value=value)
        except StoppedAt as stop:
            recorder.stop(stop.args[0])
            _close_tracker(ctx, f"stopped at {stop.args[0]} labels (--stop-at-labels)")
            return RunOutcome(rc.run_id, "stopped", error=f"left unfinished at {stop.args[0]} labels "
                              "(--stop-at-labels); rerun without it to go on")
        except KeyboardInterrupt:
            _close_tracker(ctx, "interrupted")
            raise
        except Exception as exc:  # recorded in status.json with the traceback
            why = recorder.fail(exc)
            error = f"{type(exc).__name__}: {exc}" + (f" ({why})" if why else "")
            _close_tracker(ctx, error)
            return RunOutcome(rc.run_id, "failed", error=error)


def _close_tracker(ctx: RunContext | None, error: str) -> None:
    """Mark the run failed in its trackers; a tracker that fails too is noted in run.log, not raised
    (the run's own failure is the error that matters)."""
    if ctx is None:
        return
    try:
        ctx.tracker.fail(error)
    except Exception as exc:  # noqa: BLE001
        ctx.recorder.log(f"tracker: could not mark the run failed: {type(exc).__name__}: {exc}")


def _cycle_loop(ctx: RunContext) -> float | None:
    """Sequence the phases of a run: start (or resume), prepare, one cycle after another, finish."""
    resumed = _begin(ctx)
    pretext_seconds = _prepare(ctx, resumed)
    state = resumed if resumed is not None else LoopState()
    value = None
    stop = ctx.rc.stop_at_labels
    for cycle in range(state.next_cycle, ctx.rc.al.cycles):
        if stop is not None and len(state.labeled) >= stop and state.rows:
            ctx.recorder.log(f"stopped before cycle {cycle}: {len(state.labeled)} labels reached --stop-at-labels "
                             f"{stop}; the run is unfinished (checkpointed): rerun without the flag to go on")
            raise StoppedAt(len(state.labeled))
        value = _run_cycle(ctx, state, cycle, pretext_seconds if cycle == 0 else 0.0)
    return _finish(ctx, state, value)


class StoppedAt(Exception):
    """A run left unfinished on purpose (``--stop-at-labels``): resumable, not failed."""


def _identity(ctx: RunContext) -> dict:
    """run.json at the start: the run's identity plus what the dataset and task resolved to."""
    identity = ctx.rc.identity()
    identity["metric"] = ctx.task.metric
    identity["task"] = ctx.ds.task
    identity["augment"] = {"crop_padding": ctx.transform.crop_padding, "hflip": ctx.transform.hflip,
                           "normalize": ctx.transform.normalize, "mean": list(ctx.mean), "std": list(ctx.std),
                           "channel_order": ctx.channel_order}
    if ctx.reads_features:  # the model reads feature rows as they are; mean/std are what a representation saw
        identity["augment"]["inputs"] = "frozen features"
    identity["dataset_info"] = ctx.ds.info
    identity["classes"] = [str(c) for c in ctx.ds.classes]  # reports label classes by name
    return identity


def _begin(ctx: RunContext) -> LoopState | None:
    """Start the run's records, or note a resume; the checkpointed state, or None for a fresh start.

    A checkpoint of another layout version is refused (CheckpointVersionError), never restarted over.
    """
    rc, rec = ctx.rc, ctx.recorder
    payload = rec.load_checkpoint()
    state = None if payload is None else LoopState.from_checkpoint(payload, source=rec.checkpoint_path)
    env = fingerprint(ctx.device, ctx.threads, thread_pools=ctx.thread_pools)
    if state is None:
        rec.start(_identity(ctx), rc.to_dict(), env)
        rec.log(f"start {rc.run_id} on {env['device_name']} ({ctx.device})")
    else:
        state.resumes += 1
        rec.log(f"resume {rc.run_id} at cycle {state.next_cycle} on {env['hostname']} (resume #{state.resumes})")
        rec.mark_resumed(state.resumes, env)
    # trackers log the cycles recorded so far that they miss (a crash between checkpoint and tracker)
    tracked = ctx.tracker.open(config=rc.to_dict(), identity=_read_identity(rc.run_dir) if state else {},
                               rows=state.rows if state else [], resumed=state is not None)
    if tracked:
        rec.update_identity(tracking=tracked)
    ctx.events({"type": "run_start", "run": rc.run_id, "cycles": rc.al.cycles})
    return state


def _read_identity(run_dir: Path) -> dict:
    """run.json of a run being resumed ({} when it cannot be read: trackers then start afresh)."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _prepare(ctx: RunContext, state: LoopState | None) -> float:
    """Run the strategy's prepare phase; on a fresh start record what it returned (run.json
    ``prepare``), on a resume hand the strategy its checkpointed state. The phase's seconds."""
    rc, rec, al = ctx.rc, ctx.recorder, ctx.rc.al
    timer = PhaseTimer(ctx.device)
    at_cycle(None)  # divergence checks name the phase before the first cycle
    with collect_uses("pretext") as uses, timer.phase("pretext"):
        # frozen features are computed (or read) here, so the phase and the cache record carry their cost
        features = ctx.load_features() if ctx.reads_features else None
        prep = PrepareContext(
            pool=ctx.pool_state(np.zeros(0, dtype=np.int64)), test_images=ctx.ds.x_test, mean=ctx.mean,
            std=ctx.std, channel_order=ctx.channel_order, device=ctx.device, seed=rc.seed,
            cycles=al.cycles, initial=al.initial, budget=al.budget,
            pool_fingerprint=ctx.fingerprint("pool"), cache_dir=Path(rc.output) / ".cache",
            run_dir=rc.run_dir, log=rec.log, amp=ctx.amp, progress=_epoch_events(ctx),
            features=ctx.pool_features(), features_info=features)
        info = ctx.strategy.prepare(prep)
    if info is not None and not isinstance(info, dict):
        raise AlbenchError(f"strategy {rc.strategy.name!r}: prepare() returned {type(info).__name__}; it must "
                           "return a dict of plain data (recorded in run.json under 'prepare') or None")
    # the cache entries prepare used, with their compute times (albench.cached): recorded with the phase
    # seconds cycle 0 will carry, i.e. on a fresh start, or on a resume that redoes cycle 0 from its start
    redo_cycle0 = state is not None and state.next_cycle == 0 and (state.partial is None or state.partial.cycle != 0)
    used = [u.to_record() for u in [*ctx.cache_uses, *uses]]
    if features is not None:
        _check_features(ctx, state, features)
    if state is None:
        extra = {} if features is None else {"features": features}
        rec.update_identity(prepare=info or {}, cache_uses=used, **extra)
    elif redo_cycle0:
        rec.update_identity(cache_uses=used)
    if state is not None:
        ctx.strategy.load_state_dict(state.strategy)
        if state.rows:  # a crash between the checkpoint and the records: the checkpoint is the truth
            rec.write_cycles(state.rows, state.queries)
    return timer.seconds["pretext"]


def _check_features(ctx: RunContext, state: LoopState | None, features: dict) -> None:
    """On a resume, refuse frozen features other than those the run started with (a features file
    rewritten, a cache entry of another computation): the cycles would mix two inputs."""
    if state is None:
        return
    before = (_read_identity(ctx.rc.run_dir).get("features") or {}).get("key")
    if before is not None and before != features.get("key"):
        raise AlbenchError(f"the frozen features changed since this run started (entry {before} then, {features.get('key')} "
                           f"now: {features.get('source')}); resuming would mix two inputs. Restore the features "
                           "(the file, or the cache entry) or start the run in a new output folder")


def _epoch_events(ctx: RunContext) -> Callable[[str, int, int], None]:
    """PrepareContext.progress: each call becomes an ``epoch`` event (the progress display's phase bar)."""
    def progress(what: str, done: int, total: int) -> None:
        ctx.events({"type": "epoch", "run": ctx.rc.run_id, "phase": str(what), "epoch": int(done),
                    "epochs": int(total)})
    return progress


def _save(ctx: RunContext, state: LoopState, partial: PartialCycle | None = None) -> None:
    """Checkpoint ``state`` with the strategy's current state (and the cycle in progress, if any)."""
    snap = replace(state, strategy=ctx.strategy.state_dict(), partial=partial)
    ctx.recorder.save_checkpoint(snap.to_checkpoint())


def _run_cycle(ctx: RunContext, state: LoopState, cycle: int, pretext_seconds: float) -> float:
    """Query (or take up a cycle stopped mid-training), train, evaluate and record ``cycle``; its metric."""
    at_cycle(cycle)  # divergence checks name the cycle
    timer = PhaseTimer(ctx.device)
    if cycle == 0:
        timer.seconds["pretext"] = pretext_seconds
    partial, state.partial = state.partial, None
    if partial is not None and partial.cycle == cycle:
        new, state.labeled = partial.new, partial.labeled
        timer.seconds.update(partial.seconds)
        trainer_state = partial.trainer
    else:
        new = _query(ctx, cycle, state.labeled, state.prev, timer)
        state.labeled = np.concatenate([state.labeled, new])
        trainer_state = None
    with timer.phase("train"):
        model, aux, fit, steps = _train(ctx, state, cycle, new, timer, trainer_state)
    with timer.phase("evaluate"):  # train.test_passes > 0: MC-dropout averaging, masks seeded per cycle
        metrics, test_loss, per_item = ctx.evaluate(model, ctx.x_test, ctx.y_test, per_item=True,
                                                    passes=ctx.rc.train.test_passes,
                                                    seed=derive_seed(ctx.rc.seed, "test-passes", cycle))
    value = metrics[ctx.task.metric]
    state.test_losses[cycle] = per_item.astype(np.float32)
    # whatever else the task's meter reports (e.g. per-class IoU) becomes artifacts/metric_<name>.npy
    state.extra_metrics[cycle] = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()
                                  if k != ctx.task.metric}
    state.rows.append(_cycle_row(ctx, cycle, len(state.labeled), value, test_loss, timer, fit, steps,
                                 single_pass=metrics.get(f"{ctx.task.metric}_single_pass")))
    state.queries[cycle] = ctx.pool_map[new].tolist()
    state.prev = {"model": cpu_state(model), "aux": cpu_state(aux)}
    state.next_cycle = cycle + 1
    _save(ctx, state)
    ctx.recorder.write_cycles(state.rows, state.queries)
    ctx.tracker.cycle(state.rows[-1])
    ctx.recorder.log(f"cycle {cycle}: n_labeled={len(state.labeled)} {ctx.task.metric}={value:.4f} "
                     + " ".join(f"{p}={timer.seconds.get(p, 0.0):.2f}s" for p in PHASES))
    ctx.events({"type": "cycle", "run": ctx.rc.run_id, "cycle": cycle, "n_labeled": int(len(state.labeled)),
                "value": value})
    return value


def _train(ctx: RunContext, state: LoopState, cycle: int, new: np.ndarray, timer: PhaseTimer,
           trainer_state: dict | None) -> tuple:
    """(model, aux, FitResult, optimizer steps) of ``cycle``, trained on the labeled set (continuing
    ``trainer_state``) for :func:`cycle_epochs` epochs, checkpointing every ``train.checkpoint_every``."""
    rc = ctx.rc
    model, aux = ctx.build(cycle, state.prev)
    train_idx, val_idx = _labeled_split(ctx, state.labeled, cycle)
    epochs = cycle_epochs(len(train_idx), rc.train)
    trainer = Trainer(model=model, aux=aux, task=ctx.task, transform=ctx.transform, cfg=ctx.train_cfg,
                      device=ctx.device, amp=ctx.amp, order_gen=torch_generator(rc.seed, "order", cycle),
                      aug_gen=torch_generator(rc.seed, "augment", cycle, device=ctx.device), epochs=epochs,
                      n_labeled=len(train_idx))
    if trainer_state is not None:
        trainer.load_state(trainer_state)
    epochs_before = sum(int(row["epochs"]) for row in state.rows)  # the tracker's global-epoch offset

    def on_epoch(tr: Trainer) -> None:
        ctx.tracker.epoch(cycle=cycle, epoch=tr.epoch - 1, step=epochs_before + tr.epoch - 1, loss=tr.last_loss)
        every = rc.train.checkpoint_every
        if every and tr.epoch % every == 0 and tr.epoch < tr.epochs:
            _save(ctx, state, PartialCycle(cycle=cycle, new=new, labeled=state.labeled,
                                           seconds=timer.so_far(), trainer=tr.state()))

    # the labeled rows are indexed batch by batch: the labeled set is never copied
    fit = trainer.fit(ctx.x, ctx.y, rows=torch.from_numpy(train_idx), score_fn=_score_fn(ctx, model, val_idx),
                      on_epoch=on_epoch)
    return model, aux, fit, fit.epochs * steps_per_epoch(len(train_idx), rc.train)


def _cycle_row(ctx: RunContext, cycle: int, n_labeled: int, value: float, test_loss: float, timer: PhaseTimer,
               fit: FitResult, steps: int, single_pass: float | None = None) -> dict:
    """The cycles.csv row of a finished cycle (seconds per phase, rounded to 0.1 ms); ``single_pass``:
    the metric of one pass with dropout off when ``value`` is MC-averaged (train.test_passes), else None."""
    secs = {f"seconds_{p}": round(timer.seconds.get(p, 0.0), 4) for p in PHASES}
    return {"cycle": cycle, "n_labeled": int(n_labeled), "metric": ctx.task.metric, "value": value,
            "test_loss": test_loss, **secs, "seconds_total": round(sum(timer.seconds.values()), 4),
            "epochs": fit.epochs, "steps": steps, "selected_epoch": fit.selected_epoch,
            "value_single_pass": single_pass}


def _finish(ctx: RunContext, state: LoopState, value: float | None) -> float | None:
    """Save the run's artifacts and mark it complete; returns ``value`` (the last cycle's metric)."""
    rc, labeled = ctx.rc, state.labeled
    if ctx.pool_targets.ndim == 1:
        arrays = {"labeled_targets": ctx.pool_targets[torch.from_numpy(labeled)].numpy()}
    else:  # target maps: per queried image, its labeled pixels of each class (not the maps themselves)
        arrays = {"labeled_class_pixels": _class_pixels(ctx.pool_targets, labeled, ctx.ds.num_classes)}
    extra = state.extra_metrics
    for name in sorted({k for m in extra.values() for k in m}):
        arrays[f"metric_{name}"] = np.stack([extra[c][name] for c in sorted(extra)])
    if rc.record.test_losses:
        arrays["test_loss"] = np.stack([state.test_losses[c] for c in sorted(state.test_losses)])
    if rc.record.embeddings and state.prev is not None:
        arrays.update(_final_embeddings(ctx, state.prev, labeled))
    if ctx.val_train_idx is not None:
        arrays["validation_indices"] = ctx.val_train_idx
    arrays.update(ctx.strategy.artifacts())
    ctx.recorder.save_artifacts(arrays)
    ctx.tracker.finish(rc.run_dir)  # before the run is marked complete: a tracker failure leaves it resumable
    ctx.recorder.finish()
    ctx.events({"type": "run_end", "run": rc.run_id, "value": value})
    return value


def _class_pixels(maps: torch.Tensor, indices: np.ndarray, num_classes: int) -> np.ndarray:
    """(len(indices), C) int64: pixels of each class in the (H, W) maps at ``indices``, in that
    order (ignored and out-of-range ids left out); one map at a time, so nothing big is copied."""
    out = np.zeros((len(indices), num_classes), dtype=np.int64)
    for row, i in enumerate(indices):
        m = maps[int(i)].reshape(-1).long()
        out[row] = torch.bincount(m[(m >= 0) & (m < num_classes)], minlength=num_classes).numpy()
    return out


def _query(ctx: RunContext, cycle: int, labeled: np.ndarray, prev: dict | None, timer: PhaseTimer) -> np.ndarray:
    """The indices to label at ``cycle`` (the cold start at cycle 0)."""
    rc, strategy = ctx.rc, ctx.strategy
    pool = ctx.pool_state(labeled)
    if cycle == 0:
        with timer.phase("select"):
            if rc.al.initial_selection == "balanced":  # the same draw for every strategy of this seed
                new = balanced_initial(ctx.pool_targets, rc.al.initial, ctx.ds.num_classes,
                                       numpy_rng(rc.seed, "initial"))
            else:
                new = strategy.initial(size=rc.al.initial, pool=pool, rng=numpy_rng(rc.seed, "initial"))
        return check_selection(new, rc.al.initial, labeled, pool.size, rc.strategy.name)
    with timer.phase("inference"):
        candidates = np.asarray(strategy.candidates(cycle=cycle, pool=pool,
                                                    rng=numpy_rng(rc.seed, "candidates", cycle)), dtype=np.int64)
        needs = seed_stochastic(ctx.needs, derive_seed(rc.seed, "stochastic", cycle))
        model, aux = ctx.restore(prev) if needs - {Need.LABELED} else (None, None)
        cand_out = _outputs(ctx, model, aux, needs, candidates)
        lab_out = _outputs(ctx, model, aux, needs, labeled) if Need.LABELED in needs else None
        inputs = Inputs(candidates=cand_out, labeled=lab_out, device=ctx.device)
    with timer.phase("select"):
        new = strategy.select(cycle=cycle, budget=rc.al.budget, pool=pool, inputs=inputs,
                              rng=numpy_rng(rc.seed, "select", cycle))
    return check_selection(new, rc.al.budget, labeled, pool.size, rc.strategy.name)


def _outputs(ctx: RunContext, model, aux, needs, indices: np.ndarray):
    from albench.strategies.base import Outputs

    if model is None:
        return Outputs(indices=indices)
    return compute_outputs(model=model, aux=aux, task=ctx.task, needs=needs, images=ctx.x, indices=indices,
                           transform=ctx.transform, batch_size=ctx.rc.train.eval_batch_size, device=ctx.device,
                           amp=ctx.amp, channels_last=ctx.train_cfg.channels_last)


def _final_embeddings(ctx: RunContext, prev: dict, labeled: np.ndarray) -> dict[str, np.ndarray]:
    """Final-model embeddings (float16) of a fixed random pool subset plus every labeled image.

    The subset depends only on the pool size, so runs of one sweep share it; ``embedding_indices``
    holds the train-set indices of the rows.
    """
    n = ctx.pool_images.shape[0]
    k = min(n, ctx.rc.record.embeddings)
    subset = np.random.default_rng(0).choice(n, size=k, replace=False)
    idx = np.union1d(subset, labeled)
    model, _ = ctx.restore(prev)
    out = _outputs(ctx, model, None, frozenset({Need.EMBEDDINGS}), idx)
    return {"embeddings": out.embeddings.cpu().numpy().astype(np.float16),
            "embedding_indices": ctx.pool_map[idx]}


def _labeled_split(ctx: RunContext, labeled: np.ndarray, cycle: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(pool indices to train on, pool indices for validation or None when validating elsewhere)."""
    t = ctx.rc.train
    if t.selection == "best-on-validation" and t.validation.source == "labeled":
        k = int(round(t.validation.size * len(labeled))) if t.validation.size < 1 else int(t.validation.size)
        k = min(max(1, k), len(labeled) - 1)
        val = numpy_rng(ctx.rc.seed, "validation", cycle).choice(labeled, size=k, replace=False)
        return np.setdiff1d(labeled, val), np.sort(val)
    return np.sort(labeled), None


def _score_fn(ctx: RunContext, model, val_pool_idx: np.ndarray | None):
    """Higher-is-better model-selection score per epoch, or None for ``selection: final``."""
    t = ctx.rc.train
    if t.selection == "final":
        return None
    if t.selection == "best-on-test":
        x, y = ctx.x_test, ctx.y_test
    elif val_pool_idx is not None:
        vi = torch.from_numpy(val_pool_idx).to(ctx.x.device)
        x, y = ctx.x[vi], ctx.y[vi]
    else:
        vi = torch.from_numpy(ctx.val_train_idx)
        x = ctx.train_inputs[vi].to(ctx.x.device)
        y = ctx.ds.y_train[vi].to(ctx.x.device)
    metric = ctx.task.metric
    return lambda: ctx.evaluate(model, x, y)[0][metric]
