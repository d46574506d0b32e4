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


def _seeded_mask_hook(generator: torch.Generator, pass_index: list[int] | None = None):
    """A forward hook for a dropout layer kept in eval mode (identity): it applies a mask drawn from
    ``generator``, with the layer's p and inverted scaling, element-wise (nn.Dropout) or per channel.

    ``pass_index`` None: a fresh mask for every item of every call. Otherwise (consistent MC dropout)
    one mask per pass, ``pass_index[0]``, drawn at its first call with a batch dimension of 1 and
    reused for every item of every later call of that pass."""
    masks: dict[int, torch.Tensor] = {}

    def draw(module: nn.Module, x: torch.Tensor, items: int) -> torch.Tensor:
        shape = (items, *x.shape[1:]) if type(module) is nn.Dropout else (items, x.shape[1], *([1] * (x.ndim - 2)))
        keep = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1.0 - module.p, generator=generator)
        return keep.div_(1.0 - module.p)

    def hook(module: nn.Module, inputs, output):
        x = inputs[0]
        if pass_index is None:
            return x * draw(module, x, x.shape[0])
        keep = masks.get(pass_index[0])
        if keep is None:
            keep = masks[pass_index[0]] = draw(module, x, 1)
        return x * keep

    return hook


def _stochastic_outputs(model: nn.Module, spec: StochasticPasses, images: torch.Tensor, indices: np.ndarray,
                        transform: BatchTransform, batch_size: int, device: torch.device, amp: bool,
                        channels_last: bool) -> torch.Tensor:
    """``spec.passes`` stochastic passes of every candidate, one evaluation batch at a time: ``spec.reduce``
    of each batch's (b, passes, C) float32 posteriors, concatenated (or the posteriors themselves when
    ``reduce`` is None). Extra memory: one batch's posteriors and activations, plus the result (and,
    with ``spec.consistent``, one mask per dropout layer and pass, without the batch dimension)."""
    layers = _dropout_layers(model)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(spec.seed))
    saved = None
    if spec.batchnorm == "train":  # batch statistics; the running ones are put back afterwards
        saved = {k: v.clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var",
                                                                                    "num_batches_tracked"))}
        model.train()
        for m in layers:
            m.eval()  # masks come from the hooks' generator, never from torch's global RNG
    pass_index = [0] if spec.consistent else None  # the pass being run, for consistent masks
    handles = [m.register_forward_hook(_seeded_mask_hook(generator, pass_index)) for m in layers]
    rows: list[torch.Tensor] = []
    try:
        for _, xb in _batches(images, indices, batch_size, device, transform, channels_last):
            probs = []
            for t in range(spec.passes):
                if pass_index is not None:
                    pass_index[0] = t
                with autocast(device, amp):
                    logits = model(xb).logits
                probs.append(torch.softmax(logits.float(), dim=1))
            probs = torch.stack(probs, dim=1)
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
    finally:
        for h in handles:
            h.remove()
        if saved is not None:
            model.load_state_dict(saved, strict=False)
        model.eval()
    return torch.cat(rows) if rows else torch.zeros(0, device=device)


@torch.inference_mode()
def evaluate(*, model: nn.Module, task, x: torch.Tensor, y: torch.Tensor, transform: BatchTransform,
             batch_size: int, device: torch.device, amp: bool = False, channels_last: bool = False,
             per_item: bool = False) -> tuple[dict[str, float], float, np.ndarray | None]:
    """(metrics, mean loss in nats, per-item losses or None) of ``model`` on (x, y)."""
    model.eval()
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
