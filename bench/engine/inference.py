"""Batched, gradient-free passes of the model: strategy inputs and test-set evaluation."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from bench.data.augment import BatchTransform
from bench.divergence import check_finite
from strategies.base import Need, Outputs


def _batches(x: torch.Tensor, indices: np.ndarray | None, batch_size: int, device: torch.device,
             transform: BatchTransform, channels_last: bool):
    n = x.shape[0] if indices is None else len(indices)
    idx_t = None if indices is None else torch.as_tensor(indices, dtype=torch.long, device=x.device)
    for start in range(0, n, batch_size):
        sel = slice(start, start + batch_size)
        xb = x[sel] if idx_t is None else x[idx_t[sel]]
        xb = transform.test(xb.to(device, non_blocking=True))
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yield sel, xb


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else nullcontext()


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
    want_logits = Need.LOGITS in needs
    want_post = Need.POSTERIORS in needs
    want_conf = Need.CONFIDENCE in needs
    want_emb = Need.EMBEDDINGS in needs
    want_aux = Need.AUX in needs and aux is not None
    parts: dict[str, list[torch.Tensor]] = {"logits": [], "posteriors": [], "confidence": [], "embeddings": [],
                                            "aux": []}
    finite: list[torch.Tensor] = []
    for _, xb in _batches(images, indices, batch_size, device, transform, channels_last):
        with _autocast(device, amp):
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
    return Outputs(indices=np.asarray(indices, dtype=np.int64), **cat)


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
        with _autocast(device, amp):
            out = model(xb)
        logits = out.logits.float()
        check_finite(logits, phase="evaluate", what="a logit of the model")
        meter.update(logits, yb)
        losses.append(task.loss(logits, yb).float().cpu())
    loss = torch.cat(losses)
    return meter.compute(), float(loss.mean()), (loss.numpy() if per_item else None)
