"""Whether a sweep's pretext trainings are within a CPU's reach: ``albench run --dry-run``'s warning.

A strategy's ``prepare`` may train a self-supervised network on the whole pool (PT4AL's pretext
task, TypiClust's and ProbCover's SimCLR representation): ``epochs x pool images`` passes, each
costing what the task's views cost the backbone. The official settings (SimCLR: 500 epochs of a
ResNet-18) take hours on a laptop even on 8x8 digits, and days on CIFAR-10, while the display sat
at "cycles 0%". The estimate here, made before anything is queued:

- multiply-accumulates (MACs) of one training image: the pretext network is built and one batch of
  two blank images goes through the task's own training loss, counting every convolution and linear
  layer (all the task's views included); backward costs twice forward, so training is 3x;
- seconds = epochs x pool size x (training MACs / :data:`CPU_GMACS_PER_CORE` + :data:`OVERHEAD_S`,
  the per-image cost a tiny network never hides: view augmentation, batching), divided by the cores
  a run gets (cores / local workers, or ``threads``).

It warns when that exceeds :data:`WARN_HOURS` (one hour): far beyond reach next to the minutes the
rest of a CPU sweep takes. The two constants are round figures measured on the development machine
(process CPU time of ``fit_pretext`` on digits, one thread: SimCLR on the CIFAR ResNet-18 ran at
14.5-18.5 GMAC/s counting the loss extraction pass; SimCLR on a width-8 small CNN spent 0.6 ms an
image, nearly all outside its MACs), so an estimate is good to a factor of about two, enough to tell
minutes from hours, for a CPU whose cores the run has to itself. (The issue's report: TypiClust's
default, 500 epochs of SimCLR on the ResNet-18, about 17 s an epoch on digits, 2.4 h; estimated
here at 1.5 h with 2 cores to itself, 3.0 h with the quickstart's two workers sharing them.)
Nothing is estimated when the runs will have a GPU (``device: cuda``, or ``auto`` with CUDA present
here) or run on a Slurm cluster with ``device: auto`` (its nodes may have one), nor for datasets
whose image size is unknown before loading (``image_shape`` None).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

WARN_HOURS = 1.0
CPU_GMACS_PER_CORE = 15.0  # training throughput of one core on a convolutional pretext network
OVERHEAD_S = 5e-4  # seconds an image an epoch beyond its MACs, one core


@dataclass
class PretextCost:
    """One pretext training of the sweep and its estimated cost on this machine's CPU."""

    dataset: str
    strategies: list[str]  # the strategy labels sharing it (one cached network)
    task: str
    model: str
    epochs: int
    pool: int
    macs_per_image: float  # forward MACs of one image's training views
    cores: int

    @property
    def train_macs(self) -> float:
        return 3.0 * self.macs_per_image * self.epochs * self.pool

    @property
    def hours(self) -> float:
        per_image = 3.0 * self.macs_per_image / (CPU_GMACS_PER_CORE * 1e9) + OVERHEAD_S
        return self.epochs * self.pool * per_image / self.cores / 3600.0

    def warning(self) -> str:
        who = ("strategy " if len(self.strategies) == 1 else "strategies ") + ", ".join(map(repr, self.strategies))
        return (f"{self.dataset}: the {self.task} pretext training of {who} ({self.model}, "
                f"{self.epochs} epochs x {self.pool:,} pool images, ~{self.train_macs / 1e12:,.0f} TMAC) would take "
                f"about {fmt_hours(self.hours)} on this machine's CPU ({self.cores} core(s) a run, at "
                f"~{CPU_GMACS_PER_CORE:g} GMAC/s a core), before the first cycle; fix: lower its "
                "params.pretext_epochs, pick a smaller params.pretext_model (or pretext_width), subsample the "
                "pool, or run on a GPU (device: cuda)")


def fmt_hours(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:.0f} days"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.0f} min"


def runs_on_cpu(cfg) -> bool:
    """Whether the sweep's runs will train on a CPU, as far as this machine can tell."""
    if cfg.device != "auto":
        return cfg.device == "cpu"
    if cfg.executor.name == "slurm":
        return False  # the nodes decide
    import torch

    return not torch.cuda.is_available()


def cores_per_run(cfg) -> int:
    if cfg.threads is not None:
        return int(cfg.threads)
    workers = cfg.executor.workers if cfg.executor.name == "local" else 1
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def forward_macs(spec, shape: tuple[int, int, int]) -> float | None:
    """MACs of one image's training forward pass through ``spec``'s task (all its views), counted on a
    batch of two blank images; None when the task cannot be built for that shape."""
    import torch
    from torch import nn

    from albench.strategies.pretext import make_task
    from albench.strategies.pretext.tasks import Normalizer

    c, h, w = shape
    try:
        task = make_task(spec.task, spec.options)
        net = task.build(spec.model, spec.model_params, c, (h, w))
    except Exception:  # noqa: BLE001 - an estimate only: the config checks report real problems
        return None
    total = [0.0]

    def count(module, inputs, output) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] \
                * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        x = torch.zeros((2, c, h, w), dtype=torch.uint8)
        with torch.no_grad():
            task.losses(net, x, norm=Normalizer((0.5,) * c, (0.25,) * c, torch.device("cpu")),
                        generator=torch.Generator().manual_seed(0), train=True)
    except Exception:  # noqa: BLE001
        return None
    finally:
        for hk in hooks:
            hk.remove()
    return total[0] / 2


def pretext_costs(cfg) -> list[PretextCost]:
    """Every distinct pretext training of the sweep (per dataset; the seeds share one network when the
    strategy's pretext_seed is fixed, as by default) with its estimated CPU cost; [] when the runs
    will not train on a CPU here."""
    from albench.data.pool import pool_size
    from albench.data.registry import get_dataset
    from albench.plan import resolve_strategy
    from albench.strategies.registry import make_strategy

    if not runs_on_cpu(cfg):
        return []
    cores = cores_per_run(cfg)
    out: list[PretextCost] = []
    macs_of: dict[tuple, float | None] = {}
    for i, ds in enumerate(cfg.datasets):
        spec_ds = get_dataset(ds.name)
        shape = spec_ds.image_shape(ds)
        if shape is None:
            continue
        pool = None
        seen: dict[str, PretextCost] = {}
        for j, st in enumerate(cfg.strategies):
            resolved, *_ = resolve_strategy(st, cfg.protocol, cfg.train, f"strategies[{j}]")
            specs = make_strategy(resolved.name, resolved.params).pretext_specs(cfg.seeds[0])
            for spec in specs:
                key = json.dumps(spec.fields(), sort_keys=True, default=str)
                if key in seen:
                    seen[key].strategies.append(st.key)
                    continue
                mkey = (key, shape)
                if mkey not in macs_of:
                    macs_of[mkey] = forward_macs(spec, shape)
                if macs_of[mkey] is None:
                    continue
                if pool is None:
                    pool = pool_size(spec_ds, ds, f"datasets[{i}]")
                seen[key] = PretextCost(ds.name, [st.key], spec.task, spec.model, spec.epochs, pool, macs_of[mkey],
                                        cores)
        out.extend(seen.values())
    return out


def reach_warnings(cfg) -> list[str]:
    """One line per pretext training of the sweep estimated above :data:`WARN_HOURS` on this CPU."""
    return [c.warning() for c in pretext_costs(cfg) if c.hours > WARN_HOURS]
