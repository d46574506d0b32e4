"""The pretext tasks: what the self-supervised network predicts and its per-image loss.

Each task turns a uint8 batch (B, C, H, W) into a per-image loss (B,) and a per-image score (B,,
higher is better, used to keep the best epoch), in whole-batch tensor operations. The same
function serves training (random views) and loss extraction (fixed views, eval mode), so the loss
that ranks the pool is the loss the network was trained on, as in the paper's Eq. 1.

- ``rotation`` (Gidaris et al.; PT4AL's default): 4-way classification of 0/90/180/270 degree
  rotations; per-image loss = mean cross-entropy over the four rotations.
- ``colorization`` (Zhang et al.): from the Lab lightness channel, classify each pixel's (a, b)
  colour into a ``bins`` x ``bins`` grid; per-image loss = mean pixel cross-entropy. Needs RGB.
- ``jigsaw`` (Noroozi & Favaro): cut the image into a ``grid`` x ``grid`` tile grid, shuffle the
  tiles by one of ``permutations`` fixed permutations and classify which; per-image loss = mean
  cross-entropy over ``eval_permutations`` fixed permutations.
- ``simsiam`` (Chen & He): per-image symmetric negative cosine similarity between the prediction
  of one augmented view and the (stop-gradient) projection of the other; in [-1, 1].
- ``simclr`` (Chen et al.; the representation of TypiClust and ProbCover): NT-Xent (temperature
  ``tau`` = 0.1) between two augmented views through an MLP projection head; per-image loss = the
  mean of its two views' NT-Xent terms within the batch.

Every task can also embed images (:meth:`PretextTask.embed`): the backbone's pooled embedding of
the un-augmented image, before any head (what TypiClust and ProbCover cluster).
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from albench.errors import ConfigError
from albench.typed import Bounds, validate_params
from albench.strategies.pretext.color import rgb_to_lab
from albench.strategies.pretext.nets import DenseHead, SimCLRNet, SimSiamNet, backbone


class PretextInputError(ValueError):
    """The pool's images do not suit the pretext task (e.g. colorization of grayscale images)."""


class Normalizer:
    """uint8 batches -> float32 normalised with the dataset's per-channel mean and std (0..1 units)."""

    def __init__(self, mean, std, device: torch.device) -> None:
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * s)
        self.shift = -m / s

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale + self.shift


class PretextTask:
    """Base class; ``options`` maps each task-specific option to (type, default), its range declared in
    the type (``Annotated[int, Bounds(ge=1)]``); ``check_options`` holds what a bound cannot say."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def __init__(self, **options: Any) -> None:
        self.opts = {k: options.get(k, d) for k, (_, d) in self.options.items()}

    @classmethod
    def resolve_options(cls, options: dict | None, path: str) -> dict:
        """The full, typed option mapping (defaults filled in); ConfigError on a bad one."""
        out = validate_params(cls.options, options, path, f"pretext task {cls.name!r}")
        full = {k: out.get(k, d) for k, (_, d) in cls.options.items()}
        cls.check_options(full, path)
        return full

    @classmethod
    def check_options(cls, opts: dict, path: str) -> None:
        """Range checks on the full options."""

    def check_images(self, channels: int, image_size: tuple[int, int]) -> None:
        """Raise :class:`PretextInputError` when the task cannot run on such images."""

    def build(self, model: str, model_params: dict | None, channels: int, image_size: tuple[int, int]) -> nn.Module:
        """A fresh network for this task (draws from torch's global RNG)."""
        raise NotImplementedError

    def losses(self, net: nn.Module, x: torch.Tensor, *, norm: Normalizer, generator: torch.Generator,
               train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-image loss (B,), per-image score (B,), higher is better) for a uint8 batch ``x``.

        ``train`` picks training views (random) or the fixed extraction views; the network's mode
        is the caller's. ``generator`` (on ``x``'s device) feeds any random view.
        """
        raise NotImplementedError

    def embed(self, net: nn.Module, x: torch.Tensor, *, norm: Normalizer) -> torch.Tensor:
        """(B, D) pooled backbone embedding of the un-augmented uint8 batch ``x``, before any task head
        (the caller sets the network's mode)."""
        return getattr(net, "net", net)(norm(x)).embedding


def _ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, reduction="none")


class Rotation(PretextTask):
    name = "rotation"

    def check_images(self, channels, image_size):
        if image_size[0] != image_size[1]:
            raise PretextInputError(f"pretext task 'rotation' needs square images, got {image_size}; "
                                    "use pretext_task colorization or jigsaw for this dataset")

    def build(self, model, model_params, channels, image_size):
        return backbone(model, model_params, outputs=4, in_channels=channels, image_size=image_size)

    def losses(self, net, x, *, norm, generator, train):
        xf = norm(x)
        b = x.shape[0]
        rots = torch.stack([torch.rot90(xf, k, dims=(2, 3)) for k in range(4)])  # (4, B, C, H, W)
        rows = torch.arange(b, device=x.device)
        if train:
            # four forwards, each image in a random one of its rotations per forward, as the official
            # loader shuffles them: a forward of one rotation only would let BatchNorm's batch
            # statistics give the label away (near-chance accuracy in eval mode)
            slots = torch.argsort(torch.rand(b, 4, device=x.device, generator=generator), dim=1)
        else:
            slots = torch.arange(4, device=x.device).expand(b, 4)
        loss = torch.zeros(b, device=x.device)
        correct = torch.zeros(b, device=x.device)
        for j in range(4):
            k = slots[:, j]
            logits = net(rots[k, rows]).logits
            loss += _ce(logits, k)
            correct += (logits.argmax(dim=1) == k).float()
        return loss / 4.0, correct / 4.0


class Colorization(PretextTask):
    name = "colorization"
    options = {"bins": (Annotated[int, Bounds(ge=2)], 10), "hidden": (Annotated[int, Bounds(ge=1)], 64)}
    AB_RANGE = 110.0  # |a|, |b| of sRGB colours stay within this

    def check_images(self, channels, image_size):
        if channels != 3:
            raise PretextInputError(
                f"pretext task 'colorization' needs RGB images, but the pool has {channels} channel(s); "
                "use pretext_task rotation, jigsaw or simsiam for this dataset")

    def build(self, model, model_params, channels, image_size):
        net = backbone(model, model_params, outputs=1, in_channels=1, image_size=image_size)
        return DenseHead(net, self.opts["bins"] ** 2, self.opts["hidden"])

    def target(self, lab: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class of each pixel's (a, b) cell in the bins x bins grid."""
        bins, r = self.opts["bins"], self.AB_RANGE
        q = ((lab[:, 1:] + r) * (bins / (2 * r))).floor().long().clamp(0, bins - 1)
        return q[:, 0] * bins + q[:, 1]

    def losses(self, net, x, *, norm, generator, train):
        lab = rgb_to_lab(x.float() / 255.0)
        light = lab[:, :1] / 50.0 - 1.0  # L in [0, 100] -> [-1, 1]
        logits = net(light)
        target = self.target(lab)
        per_pixel = F.cross_entropy(logits.float(), target, reduction="none")
        hit = (logits.argmax(dim=1) == target).float()
        return per_pixel.flatten(1).mean(1), hit.flatten(1).mean(1)

    def embed(self, net, x, *, norm):
        light = rgb_to_lab(x.float() / 255.0)[:, :1] / 50.0 - 1.0  # the network sees lightness only
        return net.net(light).embedding


def jigsaw_permutations(tiles: int, count: int) -> np.ndarray:
    """(count, tiles) fixed permutations of ``tiles`` tile positions; row 0 is the identity.

    All of them in lexicographic order when ``count`` is ``tiles!``; otherwise the maximal-Hamming
    set of Noroozi & Favaro, grown greedily from the identity (ties to the first candidate), over all
    permutations (up to 9 tiles) or 50,000 seeded random ones (more tiles). Deterministic.
    """
    total = math.factorial(tiles)
    if count == total and tiles <= 9:
        return np.array(list(itertools.permutations(range(tiles))), dtype=np.int64)
    if tiles <= 9:
        cand = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
    else:
        rng = np.random.default_rng(0)
        cand = np.stack([np.arange(tiles)] + [rng.permutation(tiles) for _ in range(50_000)]).astype(np.int8)
    chosen = [0]
    dmin = (cand != cand[0]).sum(1)
    for _ in range(count - 1):
        j = int(np.argmax(dmin))
        chosen.append(j)
        dmin = np.minimum(dmin, (cand != cand[j]).sum(1))
    return cand[chosen].astype(np.int64)


class Jigsaw(PretextTask):
    name = "jigsaw"
    options = {"grid": (Annotated[int, Bounds(ge=2, le=4)], 2), "permutations": (int, 24),
               "eval_permutations": (Annotated[int, Bounds(ge=1)], 8)}

    def __init__(self, **options):
        super().__init__(**options)
        g = self.opts["grid"]
        self.perms = torch.from_numpy(jigsaw_permutations(g * g, self.opts["permutations"]))
        p, e = self.opts["permutations"], self.opts["eval_permutations"]
        # evenly spaced through the set, so the identity (row 0) is always among them
        self.eval_perms = torch.from_numpy(np.unique(np.round(np.linspace(0, p - 1, e)).astype(np.int64)))

    @classmethod
    def check_options(cls, opts, path):
        g, p, e = opts["grid"], opts["permutations"], opts["eval_permutations"]
        top = min(math.factorial(g * g), 1000)
        if not 2 <= p <= top:
            raise ConfigError(f"{path}.permutations", f"must be in 2..{top} for a {g}x{g} grid",
                              f"set {path}.permutations to e.g. {min(top, 24 if g == 2 else 100)}", p)
        if e > p:
            raise ConfigError(f"{path}.eval_permutations", f"must be in 1..{p} (the permutations)",
                              f"set {path}.eval_permutations to e.g. {min(p, 8)}", e)

    def check_images(self, channels, image_size):
        g = self.opts["grid"]
        if min(image_size) < 2 * g:
            raise PretextInputError(f"jigsaw with a {g}x{g} grid needs images of at least {2 * g} pixels a side, "
                                    f"got {image_size}; lower pretext_options.grid")

    def build(self, model, model_params, channels, image_size):
        return backbone(model, model_params, outputs=self.opts["permutations"], in_channels=channels,
                        image_size=image_size)

    def shuffle(self, x: torch.Tensor, perm_index: torch.Tensor) -> torch.Tensor:
        """Each image's tiles rearranged by its permutation: position j gets tile ``perm[j]``.

        The image is cropped to a multiple of the grid (bottom/right remainder dropped).
        """
        g = self.opts["grid"]
        b, c, h, w = x.shape
        th, tw = h // g, w // g
        tiles = x[:, :, :g * th, :g * tw].reshape(b, c, g, th, g, tw).permute(0, 2, 4, 1, 3, 5).reshape(
            b, g * g, c, th, tw)
        order = self.perms.to(x.device)[perm_index]  # (b, g*g)
        shuffled = tiles[torch.arange(b, device=x.device)[:, None], order]
        return shuffled.reshape(b, g, g, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, g * th, g * tw)

    def losses(self, net, x, *, norm, generator, train):
        xf = norm(x)
        b = x.shape[0]
        if train:
            idx = torch.randint(0, self.opts["permutations"], (b,), device=x.device, generator=generator)
            logits = net(self.shuffle(xf, idx)).logits
            return _ce(logits, idx), (logits.argmax(1) == idx).float()
        loss = torch.zeros(b, device=x.device)
        correct = torch.zeros(b, device=x.device)
        for p in self.eval_perms.tolist():
            idx = torch.full((b,), p, dtype=torch.long, device=x.device)
            logits = net(self.shuffle(xf, idx)).logits
            loss += _ce(logits, idx)
            correct += (logits.argmax(1) == idx).float()
        n = len(self.eval_perms)
        return loss / n, correct / n


class SimSiam(PretextTask):
    name = "simsiam"
    options = {"dim": (Annotated[int, Bounds(ge=1)], 128), "pred_dim": (Annotated[int, Bounds(ge=1)], 32),
               "hflip": (bool, True), "jitter": (Annotated[float, Bounds(ge=0, lt=1)], 0.4)}

    def build(self, model, model_params, channels, image_size):
        net = backbone(model, model_params, outputs=1, in_channels=channels, image_size=image_size)
        return SimSiamNet(net, self.opts["dim"], self.opts["pred_dim"])

    def view(self, x: torch.Tensor, norm: Normalizer, generator: torch.Generator) -> torch.Tensor:
        """One random view per image: shifted crop (zero padding of 1/8 the side), optional flip,
        brightness and contrast jitter; all draws batched."""
        b, c, h, w = x.shape
        dev = x.device
        p = max(1, min(h, w) // 8)
        xf = x.float() / 255.0
        padded = F.pad(xf, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * p + 1, (b,), device=dev, generator=generator)
        rows = (oy[:, None] + torch.arange(h, device=dev)[None]).view(b, 1, h, 1).expand(b, c, h, w + 2 * p)
        cols = (ox[:, None] + torch.arange(w, device=dev)[None]).view(b, 1, 1, w).expand(b, c, h, w)
        xf = padded.gather(2, rows).gather(3, cols)
        if self.opts["hflip"]:
            flip = torch.rand(b, device=dev, generator=generator) < 0.5
            xf = torch.where(flip.view(-1, 1, 1, 1), xf.flip(3), xf)
        j = self.opts["jitter"]
        if j > 0:
            bright = 1.0 + (torch.rand(b, 1, 1, 1, device=dev, generator=generator) * 2 - 1) * j
            contrast = 1.0 + (torch.rand(b, 1, 1, 1, device=dev, generator=generator) * 2 - 1) * j
            mean = xf.mean(dim=(1, 2, 3), keepdim=True)
            xf = ((xf - mean) * contrast + mean) * bright
        return norm(xf.clamp(0.0, 1.0) * 255.0)

    def losses(self, net, x, *, norm, generator, train):
        z1, p1 = net(self.view(x, norm, generator))
        z2, p2 = net(self.view(x, norm, generator))
        cos = (F.cosine_similarity(p1.float(), z2.detach().float(), dim=1)
               + F.cosine_similarity(p2.float(), z1.detach().float(), dim=1)) / 2.0
        return -cos, cos


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair NT-Xent (SimCLR) of two views' projections ``z1``, ``z2`` (B, d): (loss (B,), hit (B,)).

    The 2B projections are L2-normalised; anchor i's positive is its other view and its negatives
    are the other 2B - 2 projections of the batch, scored by cosine / ``tau``. Pair i's loss is the
    mean of its two anchors' cross-entropies (nats), so ``loss.mean()`` is the usual NT-Xent over
    2B anchors. ``hit`` is the share of the pair's two anchors whose positive scores highest.
    """
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    pos = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    ce = F.cross_entropy(sim, pos, reduction="none")
    hit = (sim.argmax(dim=1) == pos).float()
    return (ce[:b] + ce[b:]) / 2.0, (hit[:b] + hit[b:]) / 2.0


class SimCLR(PretextTask):
    """SimCLR as in SCAN's simclr.py (used by TypiClust/ProbCover): two views per image, an MLP head
    (embedding -> embedding -> ``dim``), NT-Xent at ``tau``. Views: a random resized crop (area share
    in [``crop_scale``, 1], aspect ratio in [3/4, 4/3], bilinear), a horizontal flip (p = 0.5),
    brightness / contrast / saturation jitter of strength ``jitter`` (p = 0.8) and grayscale (p = 0.2,
    RGB only). SCAN's hue jitter is left out (no batched hue rotation here)."""

    name = "simclr"
    options = {"dim": (int, 128), "tau": (float, 0.1), "crop_scale": (float, 0.2), "hflip": (bool, True),
               "jitter": (float, 0.4)}

    @classmethod
    def check_options(cls, opts, path):
        if opts["dim"] < 1:
            raise ConfigError(f"{path}.dim", "must be >= 1", f"set {path}.dim to e.g. 128", opts["dim"])
        if not opts["tau"] > 0:
            raise ConfigError(f"{path}.tau", "must be > 0", f"set {path}.tau to e.g. 0.1", opts["tau"])
        if not 0 < opts["crop_scale"] <= 1:
            raise ConfigError(f"{path}.crop_scale", "must be in (0, 1]", f"set {path}.crop_scale to e.g. 0.2",
                              opts["crop_scale"])
        if not 0 <= opts["jitter"] < 1:
            raise ConfigError(f"{path}.jitter", "must be in [0, 1)", f"set {path}.jitter to e.g. 0.4", opts["jitter"])

    def build(self, model, model_params, channels, image_size):
        net = backbone(model, model_params, outputs=1, in_channels=channels, image_size=image_size)
        return SimCLRNet(net, self.opts["dim"])

    def view(self, x: torch.Tensor, norm: Normalizer, generator: torch.Generator) -> torch.Tensor:
        """One random view per image (normalised float), every draw batched."""
        b, c, h, w = x.shape
        dev = x.device

        def u(*shape):
            return torch.rand(*shape, device=dev, generator=generator)

        xf = x.float() / 255.0
        # random resized crop as an affine resampling: a crop of area share s and aspect ratio r,
        # placed uniformly inside the image, scaled back to h x w
        s = self.opts["crop_scale"] + (1.0 - self.opts["crop_scale"]) * u(b)
        r = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u(b))
        r = torch.minimum(torch.maximum(r, s), 1.0 / s)  # the ratio at which the crop still fits
        sw = torch.sqrt(s * r).clamp(max=1.0)  # crop width / image width
        sh = torch.sqrt(s / r).clamp(max=1.0)
        cx = (1.0 - sw) * (2 * u(b) - 1)  # crop centre in [-1, 1] coordinates, crop kept inside
        cy = (1.0 - sh) * (2 * u(b) - 1)
        if self.opts["hflip"]:
            sw = torch.where(u(b) < 0.5, -sw, sw)  # a negative x scale mirrors the crop
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw, cx, sh, cy
        grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
        xf = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
        j = self.opts["jitter"]
        if j > 0:
            on = (u(b, 1, 1, 1) < 0.8).float()
            bright = 1.0 + on * (u(b, 1, 1, 1) * 2 - 1) * j
            contrast = 1.0 + on * (u(b, 1, 1, 1) * 2 - 1) * j
            sat = 1.0 + on * (u(b, 1, 1, 1) * 2 - 1) * j
            xf = (xf * bright).clamp(0.0, 1.0)
            mean = xf.mean(dim=(1, 2, 3), keepdim=True)
            xf = ((xf - mean) * contrast + mean).clamp(0.0, 1.0)
            if c == 3:
                gray = (0.299 * xf[:, :1] + 0.587 * xf[:, 1:2] + 0.114 * xf[:, 2:]).expand_as(xf)
                xf = ((xf - gray) * sat + gray).clamp(0.0, 1.0)
        if c == 3:
            gray = (0.299 * xf[:, :1] + 0.587 * xf[:, 1:2] + 0.114 * xf[:, 2:]).expand_as(xf)
            xf = torch.where(u(b, 1, 1, 1) < 0.2, gray, xf)
        return norm(xf * 255.0)

    def losses(self, net, x, *, norm, generator, train):
        z1 = net(self.view(x, norm, generator))
        z2 = net(self.view(x, norm, generator))
        return nt_xent(z1, z2, self.opts["tau"])


TASKS: dict[str, type[PretextTask]] = {t.name: t for t in (Rotation, Colorization, Jigsaw, SimSiam, SimCLR)}


def make_task(name: str, options: dict | None = None, path: str = "params.pretext_options") -> PretextTask:
    """The pretext task ``name`` with validated options."""
    if name not in TASKS:
        raise ConfigError("params.pretext_task", "unknown pretext task", f"use one of {', '.join(TASKS)}", name)
    cls = TASKS[name]
    return cls(**cls.resolve_options(options, path))
