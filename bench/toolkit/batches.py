"""Batch iteration: a shuffled pass for training, an in-order pass for evaluation and scoring."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, *, device: torch.device | None = None,
                  drop_last: bool = False, even: bool = False) -> Iterator[torch.Tensor]:
    """One reshuffled pass over ``range(n)``: int64 index tensors of ``batch_size`` (moved to
    ``device`` when given, else on the CPU; ``generator`` is a CPU generator).

    The permutation is ``torch.randperm(n, generator=generator)``, one draw per pass. With
    ``drop_last`` a short last batch is dropped (a set smaller than a batch is one batch), as
    PyTorch loaders with ``drop_last=True``; otherwise only a last batch of a single image is
    dropped, since BatchNorm cannot train on one image (kept when every batch is a single image).
    With ``even`` the pass is cut into ``ceil(n / batch_size)`` batches whose sizes differ by at most
    one (e.g. 100 at batch 32: four of 25): every image is used once, no batch is tiny.
    """
    perm = torch.randperm(n, generator=generator)
    if device is not None:
        perm = perm.to(device)
    if even:
        k = -(-n // batch_size)  # ceil: the fewest batches of at most batch_size
        start = 0
        for i in range(k):
            size = n // k + (1 if i < n % k else 0)
            yield perm[start:start + size]
            start += size
        return
    if drop_last:
        size = min(batch_size, n)
        for start in range(0, n - size + 1, size):
            yield perm[start:start + size]
        return
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        if idx.numel() < 2 and n >= 2 and batch_size >= 2:
            continue
        yield idx


def batches_per_epoch(n: int, batch_size: int, *, drop_last: bool = False, even: bool = False) -> int:
    """How many batches (optimizer steps) one :func:`epoch_batches` pass over ``n`` images yields,
    with the same ``drop_last`` / ``even`` rules; 0 when ``n`` is 0."""
    if n <= 0:
        return 0
    if even:
        return -(-n // batch_size)
    if drop_last:
        return n // min(batch_size, n)
    full, rest = divmod(n, batch_size)
    # a last batch of one image is dropped (BatchNorm), unless every batch is a single image
    return full + (1 if rest and (rest >= 2 or n < 2 or batch_size < 2) else 0)


def eval_batches(x: torch.Tensor, indices: np.ndarray | torch.Tensor | None, batch_size: int,
                 device: torch.device) -> Iterator[tuple[slice, torch.Tensor]]:
    """In-order batches of ``x`` (all rows, or the rows ``indices``) moved to ``device``: pairs of
    (the batch's slice of positions in ``indices`` / ``x``, the rows, dtype unchanged)."""
    n = x.shape[0] if indices is None else len(indices)
    idx_t = None if indices is None else torch.as_tensor(indices, dtype=torch.long, device=x.device)
    for start in range(0, n, batch_size):
        sel = slice(start, start + batch_size)
        xb = x[sel] if idx_t is None else x[idx_t[sel]]
        yield sel, xb.to(device, non_blocking=True)
