"""Batched, gradient-free passes of the model: strategy inputs and test-set evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from albench.data.augment import BatchTransform
from albench.divergence import check_finite
from albench.toolkit.amp import autocast
from albench.toolkit.batches import eval_batches
from albench.strategies.base import Need, Outputs, StochasticPasses

# The most bytes of unreduced (n, passes, C) float32 posteriors a StochasticPasses need without a
# ``reduce`` may return; above it the engine refuses (a strategy then supplies a per-chunk reduce).
STOCHASTIC_RAW_LIMIT = 1 << 30


def _batches(x: torch.Tensor, indices: np.ndarray | None, batch_size: int, device: torch.device,
             transform: BatchTransform, channels_last: bool):
    """In-order (slice, test-transformed float batch on ``device``) pairs of ``x`` (or its ``indices``)."""
    for sel, xb in eval_batches(x, indices, batch_size, device):
        xb = transform.test(xb)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yield sel, xb


@torch.inference_mode()
def compute_outputs(*, model: nn.Module, aux: nn.Module | None, task, needs: frozenset, images: torch.Tensor,
                    indices: np.ndarray, transform: BatchTransform, batch_size: int, device: torch.device,
                    amp: bool = False, channels_last: bool = False) -> Outputs:
    """The outputs a strategy declared (``needs``) for pool ``indices``, in one pass, on ``device``.

    Logits / posteriors / embeddings are float32 tensors with one row per index; confidence and aux
    are (n,) float32.
    """
    model.eval()
    if aux is not None:
        aux.eval()
    spec = _stochastic_spec(needs)
    want_logits = Need.LOGITS in needs
    want_post = Need.POSTERIORS in needs
    want_conf = Need.CONFIDENCE in needs
    want_emb = Need.EMBEDDINGS in needs
    want_aux = Need.AUX in needs and aux is not None
    parts: dict[str, list[torch.Tensor]] = {"logits": [], "posteriors": [], "confidence": [], "embeddings": [],
                                            "aux": []}
    deterministic = want_logits or want_post or want_conf or want_emb or want_aux
    finite: list[torch.Tensor] = []
    for _, xb in (_batches(images, indices, batch_size, device, transform, channels_last) if deterministic else ()):
        with autocast(device, amp):
            out = model(xb)
            aux_score = aux.score(out) if want_aux else None
        logits = out.logits.float()
        if want_logits:
            parts["logits"].append(logits)
        else:  # not kept: checked batch by batch, with one sync at the end
            finite.append(torch.where(torch.isfinite(logits).all(), 0.0, float("nan")).to(logits.device))
        if want_post or want_conf:
            probs = torch.softmax(logits, dim=1)
            if want_post:
                parts["posteriors"].append(probs)
            if want_conf:
                parts["confidence"].append(task.confidence(probs).float())
        if want_emb:
            parts["embeddings"].append(out.embedding.float())
        if want_aux:
            parts["aux"].append(aux_score.float().reshape(-1))
    cat = {k: (torch.cat(v) if v else None) for k, v in parts.items()}
    for key in ("logits", "embeddings", "aux"):
        if cat[key] is not None:
            check_finite(cat[key], phase="inference", what=f"a value of the model's {key}")
    if not want_logits:
        check_finite(torch.stack(finite) if finite else torch.zeros(0), phase="inference", what="a logit of the model")
    if spec is not None:
        cat["stochastic"] = _stochastic_outputs(model, spec, images, indices, transform, batch_size, device, amp,
                                                channels_last)
    return Outputs(indices=np.asarray(indices, dtype=np.int64), **cat)


def seed_stochastic(needs: frozenset, seed: int) -> frozenset:
    """``needs`` with ``seed`` given to a StochasticPasses need that left its seed to the engine
    (``seed=None``), so dropout masks follow the run's seed and cycle; other needs unchanged."""
    return frozenset(dataclasses.replace(n, seed=seed) if isinstance(n, StochasticPasses) and n.seed is None else n
                     for n in needs)


def _stochastic_spec(needs: frozenset) -> StochasticPasses | None:
    specs = [n for n in needs if isinstance(n, StochasticPasses)]
    if len(specs) > 1:
        raise ValueError(f"a strategy may declare one StochasticPasses need; got {len(specs)}")
    if specs and (specs[0].seed is None or specs[0].passes < 1 or specs[0].batchnorm not in ("eval", "train")):
        raise ValueError(f"invalid StochasticPasses {specs[0]}: it needs a seed (the engine fills it from the run's seed), "
                         "passes >= 1 and batchnorm 'eval' or 'train'")
    return specs[0] if specs else None


_CHANNEL_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout layers with p > 0 (ValueError if there is none, or one we cannot seed)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    odd = sorted({type(m).__name__ for m in layers
                  if type(m) is not nn.Dropout and not isinstance(m, _CHANNEL_DROPOUT)})
    if odd:
        raise ValueError(f"stochastic passes support nn.Dropout and nn.Dropout1d/2d/3d; the model has {', '.join(odd)}")
    layers = [m for m in layers if m.p > 0]
    if not layers:
        raise ValueError("stochastic passes need a dropout layer with p > 0 (every pass would be identical); "
                         "set model.params.dropout, e.g. 0.5")
    return layers


def has_stochastic_split(model: nn.Module) -> bool:
    """Whether ``model`` declares where its stochastic part starts: a ``forward_prefix(x)`` holding no
    dropout (nor any other randomness) and a ``forward_suffix(h)`` with ``model(x) ==
    forward_suffix(forward_prefix(x))`` (see :mod:`albench.models.base`)."""
    return callable(getattr(model, "forward_prefix", None)) and callable(getattr(model, "forward_suffix", None))


class _Masks:
    """The seeded masks of MC-dropout passes: forward hooks on the model's dropout layers (kept in
    eval mode, so identities) that multiply each input by a fresh keep-mask with inverted scaling
    1 / (1 - p), element-wise (nn.Dropout) or per channel (Dropout1d/2d/3d), drawn from one generator
    seeded with ``seed`` (see :meth:`keep`).

    ``active`` False makes the layers identities again (one deterministic pass); a dropout layer
    firing while ``in_prefix`` is set means the model's declared prefix is not deterministic: refused.

    ``consistent`` True (consistent MC dropout, BatchBALD's): pass ``pass_index`` uses one mask per
    layer, drawn without the batch dimension at that layer's first call in the pass and applied to
    every item of every later call, so pass t is one draw of the weights for every candidate."""

    def __init__(self, layers: list[nn.Module], seed: int, device: torch.device, consistent: bool = False) -> None:
        self.on_cpu = device.type == "cpu"
        if self.on_cpu:
            self.rng = np.random.Generator(np.random.PCG64(seed))
        else:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(seed)
        self.active = True
        self.in_prefix = False
        self.consistent = consistent
        self.pass_index = 0  # the pass being run (consistent masks are kept per layer and pass)
        self._fixed: dict[tuple[int, int], torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook) for m in layers]

    def keep(self, shape: tuple[int, ...], q: float, device: torch.device) -> torch.Tensor:
        """A bool tensor of ``shape``, each element True with probability ``q``, independently.

        On the CPU from numpy's PCG64: a 16-bit uniform integer below q * 2^16 when that is a whole
        number (q = 0.5, 0.75, ...: exactly Bernoulli(q)), else a 32-bit one below round(q * 2^32)
        (within 2^-33 of q); about 4x cheaper than torch's CPU draws, which dominated the suffix of
        a cheap pass. On CUDA from torch's generator: a float32 uniform below q."""
        if not self.on_cpu:
            return torch.rand(shape, generator=self.generator, device=device, dtype=torch.float32) < q
        n = int(np.prod(shape))
        if float(q * 65536).is_integer():
            keep = self.rng.integers(0, 65536, n, dtype=np.uint16) < int(q * 65536)
        else:
            keep = self.rng.integers(0, 1 << 32, n, dtype=np.uint32) < round(q * (1 << 32))
        return torch.from_numpy(keep).reshape(shape)

    def _hook(self, module: nn.Module, inputs, output):
        if self.in_prefix:
            raise ValueError(f"the model's forward_prefix ran a dropout layer ({type(module).__name__}); the "
                             "prefix must hold no randomness: move forward_suffix's start to the first dropout")
        if not self.active:
            return output
        x = inputs[0]
        shape = tuple(x.shape) if type(module) is nn.Dropout else (*x.shape[:2], *([1] * (x.ndim - 2)))
        q = 1.0 - module.p
        if not self.consistent:
            return x * self.keep(shape, q, x.device) * (1.0 / q)
        key = (id(module), self.pass_index)
        keep = self._fixed.get(key)
        if keep is None:
            keep = self._fixed[key] = self.keep((1, *shape[1:]), q, x.device)
        return x * keep * (1.0 / q)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class seeded_dropout:
    """Context manager for MC-dropout passes of ``model`` with masks from a generator seeded with
    ``seed`` (never torch's or numpy's global RNG): yields a :class:`_Masks`. ``batchnorm="train"`` puts every
    other layer in train mode (BatchNorm uses batch statistics) and restores the running statistics
    afterwards; the model is left in eval mode."""

    def __init__(self, model: nn.Module, seed: int, device: torch.device, batchnorm: str = "eval",
                 consistent: bool = False) -> None:
        self.model, self.seed, self.device, self.batchnorm = model, int(seed), device, batchnorm
        self.consistent = consistent

    def __enter__(self) -> _Masks:
        layers = _dropout_layers(self.model)
        self.saved = None
        if self.batchnorm == "train":  # batch statistics; the running ones are put back afterwards
            self.saved = {k: v.clone() for k, v in self.model.state_dict().items()
                          if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
            self.model.train()
            for m in layers:
                m.eval()  # masks come from the hooks' generator, never from torch's global RNG
        self.masks = _Masks(layers, self.seed, self.device, consistent=self.consistent)
        return self.masks

    def __exit__(self, *exc) -> None:
        self.masks.remove()
        if self.saved is not None:
            self.model.load_state_dict(self.saved, strict=False)
        self.model.eval()


def stochastic_posteriors(model: nn.Module, xb: torch.Tensor, masks: _Masks, passes: int, *, device: torch.device,
                          amp: bool = False, split: bool | None = None,
                          with_plain: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """((b, passes, C) float32 softmax posteriors of ``passes`` MC-dropout passes of the batch ``xb``,
    and with ``with_plain`` the (b, C) float32 logits of one pass with dropout off, else None).

    ``split`` (default: whether the model declares one, :func:`has_stochastic_split`): the
    deterministic prefix runs once and only the suffix runs ``passes`` times ("cheap passes"); the
    masks are drawn in the same order as ``passes`` full passes would draw them, so both give the
    same posteriors. Otherwise every pass runs the whole model."""
    split = has_stochastic_split(model) if split is None else split
    h = None
    if split:
        masks.in_prefix = True
        try:
            with autocast(device, amp):
                h = model.forward_prefix(xb)
        finally:
            masks.in_prefix = False
    run = (lambda: model.forward_suffix(h)) if split else (lambda: model(xb))
    plain = None
    if with_plain:
        masks.active = False
        try:
            with autocast(device, amp):
                plain = run().logits.float()
        finally:
            masks.active = True
    probs = []
    for t in range(passes):
        masks.pass_index = t
        with autocast(device, amp):
            logits = run().logits
        probs.append(torch.softmax(logits.float(), dim=1))
    return torch.stack(probs, dim=1), plain


def _stochastic_outputs(model: nn.Module, spec: StochasticPasses, images: torch.Tensor, indices: np.ndarray,
                        transform: BatchTransform, batch_size: int, device: torch.device, amp: bool,
                        channels_last: bool) -> torch.Tensor:
    """``spec.passes`` stochastic passes of every candidate, one evaluation batch at a time: ``spec.reduce``
    of each batch's (b, passes, C) float32 posteriors, concatenated (or the posteriors themselves when
    ``reduce`` is None). Extra memory: one batch's posteriors and activations, plus the result (and,
    with ``spec.consistent``, one mask per dropout layer and pass, without the batch dimension). A model
    declaring a stochastic split runs its deterministic prefix once per batch."""
    rows: list[torch.Tensor] = []
    with seeded_dropout(model, spec.seed, device, spec.batchnorm, consistent=spec.consistent) as masks:
        for _, xb in _batches(images, indices, batch_size, device, transform, channels_last):
            probs, _ = stochastic_posteriors(model, xb, masks, spec.passes, device=device, amp=amp)
            if spec.reduce is None:
                if probs[0].numel() * 4 * len(indices) > STOCHASTIC_RAW_LIMIT:
                    raise ValueError(f"(n, passes, C) posteriors of {len(indices)} candidates exceed "
                                     f"{STOCHASTIC_RAW_LIMIT} bytes: give StochasticPasses a per-chunk reduce")
                rows.append(probs)
            else:
                r = spec.reduce(probs)
                if r.shape[0] != probs.shape[0]:
                    raise ValueError(f"StochasticPasses.reduce returned {r.shape[0]} rows for "
                                     f"{probs.shape[0]} candidates")
                rows.append(r)
    return torch.cat(rows) if rows else torch.zeros(0, device=device)


@torch.inference_mode()
def evaluate(*, model: nn.Module, task, x: torch.Tensor, y: torch.Tensor, transform: BatchTransform,
             batch_size: int, device: torch.device, amp: bool = False, channels_last: bool = False,
             per_item: bool = False, passes: int = 0,
             seed: int | None = None) -> tuple[dict[str, float], float, np.ndarray | None]:
    """(metrics, mean loss in nats, per-item losses or None) of ``model`` on (x, y).

    ``passes`` 0: one pass with dropout off. ``passes`` T >= 1 (classification): MC-dropout
    averaging, the prediction is the mean softmax of T stochastic passes (masks from a generator
    seeded with ``seed``; a model declaring a stochastic split runs its prefix once per batch), the
    loss is -log of the mean posterior of the true class (floored at the smallest float32); the
    metrics then also hold ``<metric>_single_pass``, the metric of the one pass with dropout off."""
    model.eval()
    if passes:
        return _evaluate_mc(model=model, task=task, x=x, y=y, transform=transform, batch_size=batch_size,
                            device=device, amp=amp, channels_last=channels_last, per_item=per_item, passes=passes,
                            seed=seed)
    meter = task.meter()
    losses = []
    for sel, xb in _batches(x, None, batch_size, device, transform, channels_last):
        yb = y[sel].to(device, non_blocking=True)
        with autocast(device, amp):
            out = model(xb)
        logits = out.logits.float()
        check_finite(logits, phase="evaluate", what="a logit of the model")
        meter.update(logits, yb)
        losses.append(task.loss(logits, yb).float().cpu())
    loss = torch.cat(losses)
    return meter.compute(), float(loss.mean()), (loss.numpy() if per_item else None)


def _evaluate_mc(*, model, task, x, y, transform, batch_size, device, amp, channels_last, per_item, passes,
                 seed) -> tuple[dict[str, float], float, np.ndarray | None]:
    if seed is None:
        raise ValueError("evaluate: MC-dropout passes need a seed (the engine derives it from the run's seed)")
    if y.ndim != 1:
        raise ValueError("evaluate: MC-dropout averaging is defined for classification (one label per image)")
    meter, plain_meter = task.meter(), task.meter()
    tiny = torch.finfo(torch.float32).tiny
    losses = []
    with seeded_dropout(model, seed, device) as masks:
        for sel, xb in _batches(x, None, batch_size, device, transform, channels_last):
            yb = y[sel].to(device, non_blocking=True)
            probs, plain = stochastic_posteriors(model, xb, masks, passes, device=device, amp=amp, with_plain=True)
            check_finite(plain, phase="evaluate", what="a logit of the model")
            check_finite(probs, phase="evaluate", what="an MC-dropout posterior of the model")
            log_mean = torch.log(probs.mean(dim=1).clamp_min(tiny))  # log of the MC predictive distribution
            meter.update(log_mean, yb)
            plain_meter.update(plain, yb)
            losses.append(task.loss(log_mean, yb).float().cpu())  # = -log p(y|x), log_mean being normalised
    loss = torch.cat(losses)
    metrics = meter.compute()
    metrics[f"{task.metric}_single_pass"] = plain_meter.compute()[task.metric]
    return metrics, float(loss.mean()), (loss.numpy() if per_item else None)
