"""sRGB to CIE Lab on batched tensors (D65 white point), for the colorization pretext task."""

from __future__ import annotations

import torch

# sRGB (linear) -> XYZ, D65
_RGB_TO_XYZ = torch.tensor([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
])
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])
_EPS = (6.0 / 29.0) ** 3


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 3, H, W) Lab: L in [0, 100], a and b roughly in [-110, 110]."""
    # float32 even under bf16 autocast: the colour bins are a few Lab units wide
    with torch.autocast(device_type=rgb.device.type, enabled=False):
        rgb = rgb.float().clamp(0.0, 1.0)
        linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        m = _RGB_TO_XYZ.to(rgb.device)
        xyz = torch.einsum("ij,bjhw->bihw", m, linear) / _WHITE.to(rgb.device).view(1, 3, 1, 1)
        f = torch.where(xyz > _EPS, xyz.clamp_min(_EPS).pow(1.0 / 3.0), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
        fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
        return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)
