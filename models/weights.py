"""Pretrained weights from a local file only (nothing is ever downloaded): reading a state dict and
checking it against the network it is meant for, so a wrong file is refused before any run."""

from __future__ import annotations

from pathlib import Path

import torch

from albench.errors import ConfigError


def read_state_dict(path: str, field: str) -> dict[str, torch.Tensor]:
    """The tensors of a local ``.pth`` / ``.pt`` / ``.bin`` (``torch.load(weights_only=True)``) or
    ``.safetensors`` file; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and DataParallel's
    ``module.`` prefix are undone. ConfigError naming ``field`` when it is missing or unreadable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(field, "is not a file", "give the path of a local state dict file (.pth or .safetensors); "
                          "albench never downloads weights", path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, a truncated file, not a checkpoint at all
        raise ConfigError(field, f"cannot be read as a state dict ({type(exc).__name__}: {str(exc)[:200]})",
                          "give a file saved with torch.save(model.state_dict(), path) or safetensors", path) from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(field, "holds no state dict (a mapping of parameter names to tensors)",
                          "give a file saved with torch.save(model.state_dict(), path)", path)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def weights_to_load(model_sd: dict[str, torch.Tensor], file_sd: dict[str, torch.Tensor], *, head: set[str],
                    skip: set[str] = frozenset(), first_conv: str | None = None, field: str, model: str,
                    path: str) -> dict[str, torch.Tensor]:
    """The tensors of ``file_sd`` to load into a network whose state dict is ``model_sd``.

    Every key of the network must come from the file with its shape, except: ``head`` keys (the
    final classifier: loaded when its shape matches, i.e. the same class count, else left freshly
    initialised), ``skip`` keys (a swapped stem) and BatchNorm's ``num_batches_tracked`` counters.
    ``first_conv``: an RGB kernel for a one-channel network is summed over its input channels (as
    timm does for grayscale). Anything else (a missing or unexpected key, another shape) raises
    ConfigError naming ``field``.
    """
    missing, wrong, out = [], [], {}
    for k, v in model_sd.items():
        if k in skip:
            continue
        if k not in file_sd:
            if k not in head and not k.endswith("num_batches_tracked"):
                missing.append(k)
            continue
        w = file_sd[k]
        if tuple(w.shape) == tuple(v.shape):
            out[k] = w
        elif k in head:
            continue
        elif (k == first_conv and w.ndim == 4 and v.shape[1] == 1 and w.shape[1] == 3
              and (w.shape[0], *w.shape[2:]) == (v.shape[0], *v.shape[2:])):
            out[k] = w.sum(dim=1, keepdim=True)
        else:
            wrong.append(f"{k} {tuple(w.shape)} (network: {tuple(v.shape)})")
    unexpected = [k for k in file_sd if k not in model_sd and k not in skip]
    if missing or wrong or unexpected:
        parts = []
        for what, keys in (("missing", missing), ("of another shape", wrong), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{len(keys)} {what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}")
        raise ConfigError(field, f"does not match {model} ({'; '.join(parts)})",
                          f"give a state dict saved from {model}'s architecture, or null for random initialisation",
                          path)
    return out
