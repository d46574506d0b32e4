"""The cycle loop of one run: initial query -> train -> evaluate -> query -> train -> ...

The loop knows strategies only through the :class:`~strategies.base.Strategy` interface. It times
each phase, records every cycle atomically, checkpoints at every cycle boundary (and every
``train.checkpoint_every`` epochs) and resumes from the last checkpoint, ending equal to an
uninterrupted run: every random draw comes from a generator derived from (seed, purpose, cycle).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.data.augment import BatchTransform
from bench.data.registry import load_dataset
from bench.engine import checkpoint as ckpt_codec
from bench.engine.device import configure_torch, resolve_device, use_amp
from bench.engine.inference import compute_outputs, evaluate
from bench.engine.malloc import tune_malloc
from bench.engine.seeding import numpy_rng, seed_global, torch_generator
from bench.engine.timer import PHASES, PhaseTimer
from bench.engine.train import Trainer
from bench.divergence import at_cycle
from bench.env import fingerprint
from bench.errors import AlbenchError, ConfigError
from bench.plan import RunConfig
from bench.records import RunRecorder
from bench.tasks import make_task
from models.registry import build_model
from strategies.base import Inputs, ModelInfo, Need, PoolState, PrepareContext, Strategy
from strategies.registry import make_strategy

CHECKPOINT_VERSION = 1
DEVICE_DATA_LIMIT = 4 << 30  # keep a dataset on the GPU when its uint8 pixels fit in this many bytes

EventFn = Callable[[dict], None]


@dataclass
class RunOutcome:
    run_id: str
    state: str  # complete | skipped | failed | busy | damaged | changed
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


def pool_fingerprint(images: torch.Tensor) -> str:
    """sha256 of the pool's pixels and shape (a cache key for anything computed from the pool)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    images = images.contiguous()
    for start in range(0, images.shape[0], 256):  # row blocks: a memory-mapped pool is never copied whole
        h.update(images[start:start + 256].numpy())
    return h.hexdigest()


class RunContext:
    """The per-run objects the cycle loop works with (data, task, strategy, devices, generators)."""

    def __init__(self, rc: RunConfig, events: EventFn | None) -> None:
        self.rc = rc
        self.events = events or (lambda e: None)
        self.recorder = RunRecorder(rc.run_dir)
        self.device = resolve_device(rc.device)
        self.threads = configure_torch(self.device, rc.threads)
        tune_malloc()  # process-wide: later runs in this process reuse freed buffers too
        self.amp = use_amp(self.device, rc.train.amp)
        self.ds = load_dataset(rc.dataset)
        self.task = make_task(self.ds.task, self.ds.num_classes, self.ds.ignore_index)
        self.strategy: Strategy = make_strategy(rc.strategy.name, rc.strategy.params)
        if self.ds.task not in self.strategy.tasks:
            raise ConfigError("strategies", f"strategy {rc.strategy.name!r} does not support {self.ds.task}",
                              f"use one of its tasks ({', '.join(sorted(self.strategy.tasks))}) or another strategy",
                              rc.strategy.name)
        self._split()
        aug = rc.train.augment
        self.transform = BatchTransform(
            self.ds.mean, self.ds.std,
            crop_padding=self.ds.crop_padding if aug.crop_padding is None else aug.crop_padding,
            hflip=self.ds.hflip if aug.hflip is None else aug.hflip,
            normalize=aug.normalize, device=self.device)
        on_device = self.device.type == "cuda" and self.pool_images.numel() < DEVICE_DATA_LIMIT
        data_dev = self.device if on_device else torch.device("cpu")
        self.x = self.pool_images.to(data_dev)
        self.y = self.pool_targets.to(data_dev)
        self.x_test = self.ds.x_test.to(data_dev)
        self.y_test = self.ds.y_test.to(data_dev)

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
                            image_size=self.ds.image_size, params=rc.model.params)
        aux = self.strategy.auxiliary(self.model_info(model))
        if rc.train.init == "warm" and prev is not None:
            model.load_state_dict(prev["model"])
            if aux is not None and prev.get("aux") is not None:
                aux.load_state_dict(prev["aux"])
        model.to(self.device)
        if rc.train.channels_last:
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

    def evaluate(self, model, x, y, per_item=False):
        return evaluate(model=model, task=self.task, x=x, y=y, transform=self.transform,
                        batch_size=self.rc.train.eval_batch_size, device=self.device, amp=self.amp,
                        channels_last=self.rc.train.channels_last, per_item=per_item)


def _cpu_state(module) -> dict | None:
    return None if module is None else {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def execute_run(rc: RunConfig, *, events: EventFn | None = None) -> RunOutcome:
    """Run (or resume, or skip if complete) one run; never raises for a failure inside the run.

    State ``busy``: another live process holds the run's lock; ``damaged``/``changed``: the folder
    cannot be resumed as this config (see :func:`bench.integrity.claim`); neither is touched."""
    from bench.integrity import claim

    with claim(rc) as refused:
        if refused is not None:
            return RunOutcome(rc.run_id, refused[0], error=refused[1])
        recorder = RunRecorder(rc.run_dir)
        if recorder.is_complete():
            return RunOutcome(rc.run_id, "skipped")
        try:
            ctx = RunContext(rc, events)
            value = _cycle_loop(ctx)
            return RunOutcome(rc.run_id, "complete", value=value)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # recorded in status.json with the traceback
            why = recorder.fail(exc)
            error = f"{type(exc).__name__}: {exc}" + (f" ({why})" if why else "")
            return RunOutcome(rc.run_id, "failed", error=error)


def _cycle_loop(ctx: RunContext) -> float | None:
    rc, rec, strategy = ctx.rc, ctx.recorder, ctx.strategy
    al, seed = rc.al, rc.seed
    state = rec.load_checkpoint()
    if state is not None and state.get("version") != CHECKPOINT_VERSION:
        state = None
    identity = rc.identity()
    identity["metric"] = ctx.task.metric
    identity["task"] = ctx.ds.task
    identity["augment"] = {"crop_padding": ctx.transform.crop_padding, "hflip": ctx.transform.hflip,
                           "normalize": ctx.transform.normalize}
    identity["dataset_info"] = ctx.ds.info
    env = fingerprint(ctx.device, ctx.threads)
    resumes = 0
    if state is None:
        rec.start(identity, rc.to_dict(), env)
        rec.log(f"start {rc.run_id} on {env['device_name']} ({ctx.device})")
    else:
        resumes = int(state.get("resumes", 0)) + 1
        rec.log(f"resume {rc.run_id} at cycle {state['next_cycle']} on {env['hostname']} (resume #{resumes})")
        rec.mark_resumed(resumes, env)
    ctx.events({"type": "run_start", "run": rc.run_id, "cycles": al.cycles})

    # ---------------------------------------------------------------- before the loop
    timer0 = PhaseTimer(ctx.device)
    at_cycle(None)
    with timer0.phase("pretext"):
        prep = PrepareContext(
            pool=ctx.pool_state(np.zeros(0, dtype=np.int64)), test_images=ctx.ds.x_test, mean=ctx.ds.mean,
            std=ctx.ds.std, device=ctx.device, seed=seed, cycles=al.cycles, initial=al.initial, budget=al.budget,
            pool_fingerprint=pool_fingerprint(ctx.pool_images), cache_dir=Path(rc.output) / ".cache",
            run_dir=rc.run_dir, log=rec.log, amp=ctx.amp)
        prep_info = strategy.prepare(prep)
    if state is None:
        rec.update_identity(prepare=prep_info or {})
        labeled = np.zeros(0, dtype=np.int64)
        rows: list[dict] = []
        queries: dict[int, list[int]] = {}
        test_losses: dict[int, np.ndarray] = {}
        extra_metrics: dict[int, dict[str, np.ndarray]] = {}
        prev: dict | None = None
        start = 0
        partial = None
    else:
        labeled = state["labeled"].numpy().astype(np.int64)
        rows = list(state["rows"])
        queries = {int(c): q.tolist() for c, q in state["queries"].items()}
        test_losses = {int(c): v.numpy() for c, v in state["test_losses"].items()}
        extra_metrics = {int(c): {k: v.numpy() for k, v in m.items()}
                         for c, m in state.get("extra_metrics", {}).items()}
        prev = state["prev"]
        start = int(state["next_cycle"])
        partial = state.get("partial")
        strategy.load_state_dict(ckpt_codec.decode(state["strategy"]))
        if rows:  # a crash between the checkpoint and the records: the checkpoint is the truth
            rec.write_cycles(rows, queries)

    def snapshot(next_cycle, partial_state=None) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "next_cycle": next_cycle,
            "labeled": torch.from_numpy(labeled.copy()), "rows": rows,
            "queries": {str(c): torch.tensor(q, dtype=torch.long) for c, q in queries.items()},
            "test_losses": {str(c): torch.from_numpy(v) for c, v in test_losses.items()},
            "extra_metrics": {str(c): {k: torch.from_numpy(v) for k, v in m.items()}
                              for c, m in extra_metrics.items()},
            "prev": prev, "strategy": ckpt_codec.encode(strategy.state_dict()), "partial": partial_state,
            "resumes": resumes,
        }

    value = None
    for cycle in range(start, al.cycles):
        at_cycle(cycle)  # divergence checks name the cycle
        timer = PhaseTimer(ctx.device)
        if cycle == 0:
            timer.seconds["pretext"] = timer0.seconds["pretext"]
        if partial is not None and int(partial["cycle"]) == cycle:
            new = partial["new"].numpy().astype(np.int64)
            labeled = partial["labeled"].numpy().astype(np.int64)
            timer.seconds.update(partial["seconds"])
            trainer_state = partial["trainer"]
        else:
            new = _query(ctx, cycle, labeled, prev, timer)
            labeled = np.concatenate([labeled, new])
            trainer_state = None
        partial = None

        # ------------------------------------------------------------ train
        with timer.phase("train"):
            model, aux = ctx.build(cycle, prev)
            train_idx, val_idx = _labeled_split(ctx, labeled, cycle)
            score_fn = _score_fn(ctx, model, val_idx)
            trainer = Trainer(model=model, aux=aux, task=ctx.task, transform=ctx.transform, cfg=rc.train,
                              device=ctx.device, amp=ctx.amp,
                              order_gen=torch_generator(seed, "order", cycle),
                              aug_gen=torch_generator(seed, "augment", cycle, device=ctx.device))
            if trainer_state is not None:
                trainer.load_state(trainer_state)
            train_rows = torch.from_numpy(train_idx)  # indexed batch by batch: the labeled set is never copied

            def on_epoch(tr: Trainer, cycle=cycle, new=new) -> None:
                every = rc.train.checkpoint_every
                if every and tr.epoch % every == 0 and tr.epoch < rc.train.epochs:
                    secs = dict(timer.seconds)
                    rec.save_checkpoint(snapshot(cycle, {
                        "cycle": cycle, "new": torch.from_numpy(new.copy()),
                        "labeled": torch.from_numpy(labeled.copy()), "seconds": secs, "trainer": tr.state()}))

            fit = trainer.fit(ctx.x, ctx.y, rows=train_rows, score_fn=score_fn, on_epoch=on_epoch)

        # ------------------------------------------------------------ evaluate
        with timer.phase("evaluate"):
            metrics, test_loss, per_item = ctx.evaluate(model, ctx.x_test, ctx.y_test, per_item=True)
        value = metrics[ctx.task.metric]
        test_losses[cycle] = per_item.astype(np.float32)
        # whatever else the task's meter reports (e.g. per-class IoU) becomes artifacts/metric_<name>.npy
        extra_metrics[cycle] = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()
                                if k != ctx.task.metric}
        secs = {f"seconds_{p}": round(timer.seconds.get(p, 0.0), 4) for p in PHASES}
        rows.append({
            "cycle": cycle, "n_labeled": int(len(labeled)), "metric": ctx.task.metric, "value": value,
            "test_loss": test_loss, **secs, "seconds_total": round(sum(timer.seconds.values()), 4),
            "epochs": fit.epochs, "selected_epoch": fit.selected_epoch,
        })
        queries[cycle] = ctx.pool_map[new].tolist()
        prev = {"model": _cpu_state(model), "aux": _cpu_state(aux)}
        rec.save_checkpoint(snapshot(cycle + 1))
        rec.write_cycles(rows, queries)
        rec.log(f"cycle {cycle}: n_labeled={len(labeled)} {ctx.task.metric}={value:.4f} "
                + " ".join(f"{p}={timer.seconds.get(p, 0.0):.2f}s" for p in PHASES))
        ctx.events({"type": "cycle", "run": rc.run_id, "cycle": cycle, "n_labeled": int(len(labeled)),
                    "value": value})

    if ctx.pool_targets.ndim == 1:
        arrays = {"labeled_targets": ctx.pool_targets[torch.from_numpy(labeled)].numpy()}
    else:  # target maps: per queried image, its labeled pixels of each class (not the maps themselves)
        arrays = {"labeled_class_pixels": _class_pixels(ctx.pool_targets, labeled, ctx.ds.num_classes)}
    for name in sorted({k for m in extra_metrics.values() for k in m}):
        arrays[f"metric_{name}"] = np.stack([extra_metrics[c][name] for c in sorted(extra_metrics)])
    if rc.record.test_losses:
        arrays["test_loss"] = np.stack([test_losses[c] for c in sorted(test_losses)])
    if rc.record.embeddings and prev is not None:
        arrays.update(_final_embeddings(ctx, prev, labeled))
    if ctx.val_train_idx is not None:
        arrays["validation_indices"] = ctx.val_train_idx
    arrays.update(strategy.artifacts())
    rec.save_artifacts(arrays)
    rec.finish()
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
            new = strategy.initial(size=rc.al.initial, pool=pool, rng=numpy_rng(rc.seed, "initial"))
        return check_selection(new, rc.al.initial, labeled, pool.size, rc.strategy.name)
    with timer.phase("inference"):
        candidates = np.asarray(strategy.candidates(cycle=cycle, pool=pool,
                                                    rng=numpy_rng(rc.seed, "candidates", cycle)), dtype=np.int64)
        needs = strategy.needs
        model, aux = ctx.restore(prev) if needs - {Need.LABELED} else (None, None)
        cand_out = _outputs(ctx, model, aux, needs, candidates)
        lab_out = _outputs(ctx, model, aux, needs, labeled) if Need.LABELED in needs else None
        inputs = Inputs(candidates=cand_out, labeled=lab_out, device=ctx.device)
    with timer.phase("select"):
        new = strategy.select(cycle=cycle, budget=rc.al.budget, pool=pool, inputs=inputs,
                              rng=numpy_rng(rc.seed, "select", cycle))
    return check_selection(new, rc.al.budget, labeled, pool.size, rc.strategy.name)


def _outputs(ctx: RunContext, model, aux, needs, indices: np.ndarray):
    from strategies.base import Outputs

    if model is None:
        return Outputs(indices=indices)
    return compute_outputs(model=model, aux=aux, task=ctx.task, needs=needs, images=ctx.x, indices=indices,
                           transform=ctx.transform, batch_size=ctx.rc.train.eval_batch_size, device=ctx.device,
                           amp=ctx.amp, channels_last=ctx.rc.train.channels_last)


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
        x = ctx.ds.x_train[vi].to(ctx.x.device)
        y = ctx.ds.y_train[vi].to(ctx.x.device)
    metric = ctx.task.metric
    return lambda: ctx.evaluate(model, x, y)[0][metric]
