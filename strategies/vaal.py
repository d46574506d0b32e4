"""Variational Adversarial Active Learning (Sinha, Ebrahimi & Darrell, ICCV 2019; sinhasam/vaal).

Each query trains, from scratch, a VAE on the whole pool (labeled and unlabeled images) and a
discriminator on the VAE's latent means that tells labeled from unlabeled; the VAE is also trained
to fool it. The K unlabeled images the discriminator finds least likely to be labeled (lowest
D(mu)) are queried. The task model plays no part: in this harness VAAL selects and the shared
protocol trains.

Faithful to the official code: latent 32, VAE loss = MSE (mean) + beta x KL (summed over batch and
latent), beta = 1; VAE step = VAE loss on a labeled and an unlabeled batch + 1.0 x [BCE(D(mu_l), 1)
+ BCE(D(mu_u), 1)]; discriminator step = BCE(D(mu_l), 1) + BCE(D(mu_u), 0) on the last VAE step's
batches; 2 VAE steps per discriminator step; Adam lr 5e-4 for both; batch 128; fresh networks each
query; training length ``epochs`` x pool size / batch size iterations (the official count,
100 epochs: 39,062 iterations on CIFAR-10). The discriminator returns a logit and the losses use
``binary_cross_entropy_with_logits`` (the same loss as sigmoid + BCE, without its saturation);
ranking by the logit is ranking by D(mu).

``subset`` gives the variant of the Sequential-GCN codebase (razvancaramalau/Sequential-GCN-for-
Active-Learning), which the CoreGCN and PT4AL papers compare against: each query draws a random
subset of that many unlabeled images, the VAE and discriminator train on the labeled set and that
subset only, for ``epochs`` x (labeled + subset) / batch size iterations, and only the subset is
scored. The default (None) is the VAAL authors' own code: the whole pool.

The architecture is the official 32x32 one generalised to any image size (see :func:`vae_plan`).
Differences from the official code, each switchable back as a named quirk (all on under
``protocol: official``):

- scoring runs the VAE and discriminator in eval mode (BN running statistics), without
  augmentation; the official code scores in train mode (``bn-batch-stats``) through its training
  transform, so a random horizontal flip is applied at scoring time (``flip-at-scoring``);
- the VAE trains without augmentation; the official code trains it on randomly flipped images
  (``flip-training``);
- images are normalised with the run's mean and std (the harness's test transform); the official
  code normalises with mean 0.5 and std 0.5 (custom_datasets.py), so the VAE sees [-1, 1] pixels
  (``symmetric-pixels``; the MSE term is then on the official scale against the summed KL);
- training batches of unlabeled images are all full (a short last batch of each pass is dropped,
  as for the labeled ones); the official unlabeled loader keeps it (``drop_last=False`` in main.py,
  whose loader solver.py trains on), so one batch a pass is small (``unlabeled-short-batch``).

The task model's own normalisation is the separate ``official-normalization`` quirk (the run's
``train.augment`` mean and std set to 0.5).

Note on the official loss: the KL term is summed over the batch while the MSE is averaged over
every pixel, so the KL dominates and the posterior drifts towards the prior as training goes on
(on digits, width 16, batch 64: the spread of mu across images falls from 0.14 after 20 iterations
to 0.05 after 100). We keep that form (``beta`` scales it) because it is what the published
numbers come from.

Randomness: networks are initialised under :func:`torch.random.fork_rng` from a seed drawn from
``rng`` (torch's global RNG is left as it was); batch order, reparameterisation noise and flips
come from explicit generators seeded from ``rng``. On the CPU a seed fixes the query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Iterator, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from albench.data.augment import BatchTransform
from albench.toolkit.batches import epoch_batches, eval_batches
from albench.toolkit.seeding import seeded_init
from albench.typed import MAX_COUNT, Bounds
from albench.strategies.base import (Inputs, PoolState, PrepareContext, Quirk, Strategy, Subset, random_subset,
                             top_k_lowest)
from albench.strategies.registry import register_strategy

VAAL_REPO = "sinhasam/vaal@67263f3"  # the repository's HEAD (2020-02-21) the quirks were read from


def vae_plan(image_size: tuple[int, int]) -> tuple[int, int, tuple[int, int]]:
    """(encoder stages, decoder stages, decoder start size (h, w)) for images of ``image_size``.

    Decoder stages ``up = max(1, floor(log2(min(H, W))) - 2)``; encoder stages ``up + 1``; the decoder
    starts at ``(ceil(H / 2**up), ceil(W / 2**up))`` and its output is cropped to (H, W). For 32x32
    this is the official network (4 stride-2 convs down to 2x2, decoder from 4x4 with 3 transposed
    convs); 8x8 digits get 2 down (to 2x2) and 1 up (from 4x4). Needs min(H, W) >= 4.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if min(h, w) < 4:
        raise ValueError(f"VAAL's VAE needs images of at least 4x4 pixels, got {h}x{w}")
    up = max(1, int(math.floor(math.log2(min(h, w)))) - 2)
    return up + 1, up, (math.ceil(h / 2 ** up), math.ceil(w / 2 ** up))


def _official_init(module: nn.Module) -> None:
    # as the official code: Kaiming-normal conv and linear weights, zero biases, BN at (1, 0); its
    # initialiser never reaches fc_mu / fc_logvar or the transposed convs, which keep torch's default
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VAE(nn.Module):
    """Conv VAE sized from the image: stride-2 4x4 convs of widths ``width * 2**i`` (BN + ReLU)
    down, linear maps to ``(mu, logvar)``, and the mirror image up with 4x4 transposed convs
    (BN + ReLU) and a 1x1 transposed conv to the image channels (no output activation)."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], *, latent_dim: int = 32,
                 width: int = 128) -> None:
        super().__init__()
        down, up, start = vae_plan(image_size)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.start = start
        widths = [width * 2 ** i for i in range(down)]
        enc, cin = [], in_channels
        h, w = self.image_size
        for c in widths:
            enc += [nn.Conv2d(cin, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin, h, w = c, h // 2, w // 2
        self.encoder = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(widths[-1] * h * w, latent_dim)
        self.fc_logvar = nn.Linear(widths[-1] * h * w, latent_dim)
        self.decoder_in = nn.Linear(latent_dim, widths[-1] * start[0] * start[1])
        rev = widths[::-1]
        dec = []
        for cin, cout in zip(rev[:up], rev[1:up + 1]):
            dec += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        dec.append(nn.ConvTranspose2d(widths[0], in_channels, 1))
        self.decoder = nn.Sequential(*dec)
        _official_init(self.encoder)
        _official_init(self.decoder_in)
        _official_init(self.decoder)  # only its BatchNorms: ConvTranspose2d is not a Conv2d

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, latent_dim)."""
        z = torch.flatten(self.encoder(x), 1)
        return self.fc_mu(z), self.fc_logvar(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) reconstruction of latents ``z``."""
        x = self.decoder(self.decoder_in(z).view(z.shape[0], -1, *self.start))
        return x[:, :, :self.image_size[0], :self.image_size[1]]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(reconstruction, mu, logvar), the latent sampled with noise from ``generator``."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(mu + eps * torch.exp(0.5 * logvar)), mu, logvar


class Discriminator(nn.Module):
    """latent -> 512 -> 512 -> 1 with ReLUs; ``forward`` returns the logit of D = P(labeled)."""

    def __init__(self, latent_dim: int = 32, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        _official_init(self.net)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B,) logits; their sigmoid is D(z)."""
        return self.net(z).reshape(-1)


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float) -> torch.Tensor:
    """MSE (mean over all pixels) + beta x KL(q(z|x) || N(0, I)) summed over the batch (official form)."""
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return F.mse_loss(recon, x) + beta * kl


def _batches(indices: np.ndarray, size: int, gen: torch.Generator, *, drop_last: bool = True) -> Iterator[np.ndarray]:
    """Endless batches of ``size`` from ``indices``, reshuffled every pass (one ``torch.randperm`` from
    ``gen`` per pass). ``drop_last``: a short last batch is dropped; otherwise every pass ends with
    its short batch, whatever its size (as a DataLoader with ``drop_last=False``, one image included)."""
    while True:
        if drop_last:
            for idx in epoch_batches(len(indices), size, gen, drop_last=True):
                yield indices[idx.numpy()]
        else:
            perm = torch.randperm(len(indices), generator=gen).numpy()
            for start in range(0, len(indices), size):
                yield indices[perm[start:start + size]]


def pool_stats(images: torch.Tensor, chunk: int = 256) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W) in 0..1 units, computed in
    chunks so memory stays bounded."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0
        s += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(float(m) for m in mean), tuple(float(v) for v in std)


@dataclass(frozen=True)
class VAALParams:
    """``iterations``: discriminator steps per query (each after ``vae_steps`` VAE steps); None
    counts them as the official code, ``epochs`` x images trained on // ``batch_size``.
    ``subset``: unlabeled images drawn per query to train on and score (None: the whole unlabeled
    pool). ``width``: channels of the first encoder conv, doubling per stage (128: the official
    network). The fields after ``score_batch_size`` are the official-code switches (see the module
    docstring)."""

    epochs: Annotated[float, Bounds(gt=0, le=MAX_COUNT)] = 100.0
    iterations: Annotated[int | None, Bounds(ge=1)] = None
    subset: Subset = None
    batch_size: Annotated[int, Bounds(ge=1)] = 128
    latent_dim: Annotated[int, Bounds(ge=1)] = 32
    width: Annotated[int, Bounds(ge=1)] = 128
    beta: Annotated[float, Bounds(ge=0)] = 1.0
    adversary_weight: Annotated[float, Bounds(ge=0)] = 1.0
    vae_steps: Annotated[int, Bounds(ge=1)] = 2
    lr: Annotated[float, Bounds(gt=0)] = 5e-4
    score_batch_size: Annotated[int, Bounds(ge=1)] = 512
    input_norm: Literal["dataset", "symmetric"] = "dataset"
    train_flip: bool = False
    score_flip: bool = False
    score_train_mode: bool = False
    unlabeled_drop_last: bool = True


@register_strategy
class VAAL(Strategy):
    name = "vaal"
    description = ("VAE + adversarial discriminator on its latent, retrained each query on labeled and unlabeled "
                   "images; the K lowest D(mu) (params: epochs, iterations, subset, batch_size, latent_dim, width, beta, "
                   "adversary_weight, vae_steps, lr)")
    Params = VAALParams
    quirks = (
        Quirk("bn-batch-stats", "VAE and discriminator left in train mode at scoring time: BatchNorm uses the "
              "statistics of each scoring batch (of unlabeled images only), so a score depends on its batch-mates",
              params={"score_train_mode": True}, source=f"{VAAL_REPO} sampler.py"),
        Quirk("flip-at-scoring", "the unlabeled pool is scored through the training transform, so each image "
              "is randomly flipped horizontally before scoring", params={"score_flip": True},
              source=f"{VAAL_REPO} custom_datasets.py"),
        Quirk("flip-training", "the VAE and discriminator train on randomly horizontally flipped images",
              params={"train_flip": True}, source=f"{VAAL_REPO} custom_datasets.py"),
        Quirk("symmetric-pixels", "the VAE sees pixels normalised with mean 0.5 and std 0.5, in [-1, 1], instead of "
              "the run's normalisation", params={"input_norm": "symmetric"},
              source=f"{VAAL_REPO} custom_datasets.py"),
        Quirk("unlabeled-short-batch", "the VAE and discriminator train on unlabeled batches from a loader with "
              "drop_last=False, so each pass over the unlabeled images ends with a short batch (its size: their "
              "count mod the batch size, one image included); the labeled loader drops its short batch in both",
              params={"unlabeled_drop_last": False}, source=f"{VAAL_REPO} main.py"),
        Quirk("official-normalization", "the task model's images are normalised with mean 0.5 and std 0.5 (in "
              "[-1, 1]) instead of the dataset's mean and std", train={"augment.mean": [0.5, 0.5, 0.5],
                                                                      "augment.std": [0.5, 0.5, 0.5]},
              source=f"{VAAL_REPO} main.py"),
    )

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self.last_losses: dict[str, float] = {}

    # ------------------------------------------------------------------ hooks
    def prepare(self, ctx: PrepareContext) -> None:
        # select gets no dataset statistics; the harness's test transform normalises with these
        self._stats = (tuple(ctx.mean), tuple(ctx.std))
        self._bgr = ctx.channel_order == "bgr"  # the run's channel order: its mean/std index channels in it

    def num_iterations(self, n_images: int) -> int:
        """Discriminator steps per query: ``iterations``, or epochs x ``n_images`` // batch size (>= 1),
        where ``n_images`` is the number of images trained on (labeled + unlabeled ones)."""
        if self.iterations is not None:
            return self.iterations
        return max(1, int(self.epochs * n_images) // self.batch_size)

    def candidates(self, *, cycle: int, pool: PoolState, rng: np.random.Generator) -> np.ndarray:
        return random_subset(pool.unlabeled, self.subset, rng)

    def _transform(self, images: torch.Tensor, device: torch.device) -> BatchTransform:
        if self._stats is None:  # called without prepare (tests, notebooks): the pool's own statistics
            self._stats = pool_stats(images)
        mean, std = self._stats
        if self.input_norm == "symmetric":  # the official (x - 0.5) / 0.5: pixels in [-1, 1]
            mean, std = (0.5,) * len(mean), (0.5,) * len(std)
        return BatchTransform(mean, std, hflip=True, bgr=getattr(self, "_bgr", False), device=device)

    def train_networks(self, pool: PoolState, device: torch.device, rng: np.random.Generator,
                       unlabeled: np.ndarray | None = None) -> tuple[nn.Module, nn.Module]:
        """A freshly initialised VAE and discriminator trained to tell ``pool``'s labeled images from
        ``unlabeled`` (pool indices; default: every unlabeled image)."""
        labeled = np.asarray(pool.labeled, dtype=np.int64)
        unlabeled = pool.unlabeled if unlabeled is None else np.asarray(unlabeled, dtype=np.int64)
        if len(labeled) == 0 or len(unlabeled) == 0:
            raise ValueError("VAAL needs at least one labeled and one unlabeled image to train its discriminator")
        init_seed, order_seed, noise_seed = (int(s) for s in rng.integers(2 ** 63 - 1, size=3))
        with seeded_init(init_seed):
            vae = VAE(pool.images.shape[1], tuple(pool.images.shape[2:]), latent_dim=self.latent_dim,
                      width=self.width)
            disc = Discriminator(self.latent_dim)
        vae.to(device).train()
        disc.to(device).train()
        order = torch.Generator().manual_seed(order_seed)
        noise = torch.Generator(device=device).manual_seed(noise_seed)
        tf = self._transform(pool.images, device)
        # a set smaller than a batch is used whole at each step (the official loader assumes >= 128 labels)
        lab_it = _batches(labeled, min(self.batch_size, len(labeled)), order)
        unl_it = _batches(unlabeled, min(self.batch_size, len(unlabeled)), order, drop_last=self.unlabeled_drop_last)

        def load(idx: np.ndarray) -> torch.Tensor:
            x = pool.images[torch.from_numpy(idx)].to(device, non_blocking=True)
            return tf.to_float(tf.random_flip(x, noise) if self.train_flip else x)

        bce = F.binary_cross_entropy_with_logits
        opt_vae = torch.optim.Adam(vae.parameters(), lr=self.lr)
        opt_disc = torch.optim.Adam(disc.parameters(), lr=self.lr)
        for _ in range(self.num_iterations(len(labeled) + len(unlabeled))):
            for _ in range(self.vae_steps):
                xl, xu = load(next(lab_it)), load(next(unl_it))
                # two passes, as the official code: BatchNorm sees a labeled and an unlabeled batch
                rec_l, mu_l, lv_l = vae(xl, noise)
                rec_u, mu_u, lv_u = vae(xu, noise)
                d_l, d_u = disc(mu_l), disc(mu_u)
                # the VAE wants both sets to look labeled to the discriminator
                adv = bce(d_l, torch.ones_like(d_l)) + bce(d_u, torch.ones_like(d_u))
                loss_vae = (vae_loss(xl, rec_l, mu_l, lv_l, self.beta) + vae_loss(xu, rec_u, mu_u, lv_u, self.beta)
                            + self.adversary_weight * adv)
                opt_vae.zero_grad(set_to_none=True)
                loss_vae.backward()
                opt_vae.step()
            with torch.no_grad():  # the VAE stays in train mode here, as in the official code
                mu_l, mu_u = vae.encode(xl)[0], vae.encode(xu)[0]
            d_l, d_u = disc(mu_l), disc(mu_u)
            loss_disc = bce(d_l, torch.ones_like(d_l)) + bce(d_u, torch.zeros_like(d_u))
            opt_disc.zero_grad(set_to_none=True)
            loss_disc.backward()
            opt_disc.step()
        self.last_losses = {"vae": float(loss_vae.detach()), "discriminator": float(loss_disc.detach())}
        return vae, disc

    @torch.no_grad()
    def score(self, vae: nn.Module, disc: nn.Module, images: torch.Tensor, indices: np.ndarray,
              device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n,) discriminator logits of P(labeled) for ``images[indices]``, on the CPU (lower: less
        like the labeled set). Eval mode and no augmentation unless the quirks say otherwise."""
        vae.train(self.score_train_mode)
        disc.train(self.score_train_mode)
        tf = self._transform(images, device)
        # in train mode the batch size changes the scores: use the training batch size, as the official code
        bs = self.batch_size if self.score_train_mode else self.score_batch_size
        out = []
        for _, x in eval_batches(images, np.asarray(indices, dtype=np.int64), bs, device):
            if self.score_flip:
                x = tf.random_flip(x, generator)
            out.append(disc(vae.encode(tf.to_float(x))[0]).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def select(self, *, cycle: int, budget: int, pool: PoolState, inputs: Inputs,
               rng: np.random.Generator) -> np.ndarray:
        device = inputs.device
        candidates = inputs.candidates.indices
        # with a subset the networks see only it; without one, candidates are the whole unlabeled pool
        vae, disc = self.train_networks(pool, device, rng, None if self.subset is None else candidates)
        flips = torch.Generator(device=device).manual_seed(int(rng.integers(2 ** 63 - 1)))
        logits = self.score(vae, disc, pool.images, candidates, device, flips)
        return candidates[top_k_lowest(logits, budget)]
