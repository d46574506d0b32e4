"""Batched augmentation on the training device: random crop with zero padding, horizontal flip,
normalisation. No per-image Python and no PIL in the hot loop."""

from __future__ import annotations

import torch


class BatchTransform:
    """Turns uint8 image batches (B, C, H, W) into normalised float batches on their device.

    ``train`` draws crop offsets and flips from the given generator (which must live on the batch's
    device), so the augmentation stream is fixed by the run seed.
    """

    def __init__(self, mean, std, *, crop_padding: int = 0, hflip: bool = False, normalize: bool = True,
                 bgr: bool = False, device: torch.device | str = "cpu") -> None:
        self.crop_padding = int(crop_padding)
        self.hflip = bool(hflip)
        self.normalize = bool(normalize)
        self.bgr = bool(bgr)  # reverse the channels before normalising (images as OpenCV reads them)
        device = torch.device(device)
        # fold 1/255 into the affine map: out = x * scale + shift
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        if self.normalize:
            self.scale = 1.0 / (255.0 * std_t)
            self.shift = -mean_t / std_t
        else:
            self.scale = torch.full_like(mean_t, 1.0 / 255.0)
            self.shift = torch.zeros_like(mean_t)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float32 images (the test-time transform); ``mean``/``std`` index the channels in
        their order after the optional BGR reversal."""
        if self.bgr:
            x = x.flip(1)
        return x.to(torch.float32) * self.scale + self.shift

    def random_crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each image shifted by its own offset in [-p, p]^2, vacated pixels zero (as torchvision pads)."""
        p = self.crop_padding
        if p == 0:
            return x
        b, c, h, w = x.shape
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
        wp = w + 2 * p
        rows = (oy[:, None] + torch.arange(h, device=x.device)[None]).view(b, 1, h, 1).expand(b, c, h, wp)
        cols = (ox[:, None] + torch.arange(w, device=x.device)[None]).view(b, 1, 1, w).expand(b, c, h, w)
        out = padded.gather(2, rows)  # (b, c, h, w + 2p): the chosen rows
        return out.gather(3, cols)

    def random_flip(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.hflip:
            return x
        flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented, normalised float32 batch."""
        return self.to_float(self.random_flip(self.random_crop(x, generator), generator))

    def test(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_float(x)

    def train_pair(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, *,
                   fill: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented normalised float32 images, their (B, H, W) target maps moved alike).

        Each map is shifted and flipped with its image, by the very draws :meth:`train` makes; map
        pixels shifted in from outside get ``fill`` (the ignore index), so they carry no label.
        """
        p = self.crop_padding
        if p:
            b, _, h, w = x.shape
            oy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
            ox = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=generator)
            x, y = _shift(x, oy, ox, p, 0), _shift(y[:, None], oy, ox, p, fill)[:, 0]
        if self.hflip:
            flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            y = torch.where(flip.view(-1, 1, 1), y.flip(2), y)
        return self.to_float(x), y


def _shift(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, p: int, fill: int) -> torch.Tensor:
    """(B, C, H, W) windows at offsets (oy, ox) of ``x`` padded by ``p`` with ``fill``."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p), value=fill)
    rows = (oy[:, None] + torch.arange(h, device=x.device)[None]).view(b, 1, h, 1).expand(b, c, h, w + 2 * p)
    cols = (ox[:, None] + torch.arange(w, device=x.device)[None]).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)
