"""Batched, gradient-free passes of the model: strategy inputs and test-set evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.data.augment import BatchTransform
from bench.toolkit.amp import autocast
from bench.toolkit.batches import eval_batches
from strategies.base import Need, Outputs


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
    want_logits = Need.LOGITS in needs
    want_post = Need.POSTERIORS in needs
    want_conf = Need.CONFIDENCE in needs
    want_emb = Need.EMBEDDINGS in needs
    want_aux = Need.AUX in needs and aux is not None
    parts: dict[str, list[torch.Tensor]] = {"logits": [], "posteriors": [], "confidence": [], "embeddings": [],
                                            "aux": []}
    for _, xb in _batches(images, indices, batch_size, device, transform, channels_last):
        with autocast(device, amp):
            out = model(xb)
            aux_score = aux.score(out) if want_aux else None
        logits = out.logits.float()
        if want_logits:
            parts["logits"].append(logits)
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
        with autocast(device, amp):
            out = model(xb)
        logits = out.logits.float()
        meter.update(logits, yb)
        losses.append(task.loss(logits, yb).float().cpu())
    loss = torch.cat(losses)
    return meter.compute(), float(loss.mean()), (loss.numpy() if per_item else None)
