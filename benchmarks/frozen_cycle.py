"""One AL cycle (train + inference + select) per strategy: a head on 512-d frozen features against the
same strategy on small-cnn images, at a 50,000-image pool, as ratios measured in one run.

Workload (the same for both models, so the ratio is the cost of the model's inputs and size):

- pool: the 50,000 CIFAR-10 training images (``--data``, ../shared/data by default), 1,000 of them
  labeled (a seeded random draw), query ``--budget`` (1,000) from the 49,000 others;
- training: the engine's :class:`~albench.engine.train.Trainer` for ``--epochs`` (20) epochs of batch 64,
  SGD lr 0.05, from a fresh seeded network; small-cnn (width 32, dropout 0.5) on the uint8 images
  with the run's batched crop + flip augmentation and NHWC layout; the head (linear, dropout 0.5)
  on float32 feature rows held in memory (no decoding, no augmentation);
- inference: the engine's :func:`~albench.engine.inference.compute_outputs` for what the strategy
  declares, over the unlabeled pool (and the labeled set when declared), eval batches of 1,024;
- select: the strategy's ``select`` with the run's generator. TypiClust and ProbCover select from
  the same 512-d features in both cases (their ``representation: features``; ProbCover's graph is
  built once, outside the cycle, as its ``prepare`` does), so only their train phase differs.

The 512-d features are the pooled embedding of a randomly initialised width-64 small-cnn (seed 0) of
every pool image, computed once before the timings: the head's cost depends on the width, not on
how good the features are. (ProbCover's graph density, hence its select time, does depend on them.)

Each strategy runs its two cycles back to back (head first), one torch thread (``--threads``), after
one untimed warm-up cycle of each model. Each phase is timed twice: wall-clock and the process's CPU
time (on a shared machine the CPU time is the steadier measure of the work; with one thread the two
agree on an idle one). ``ratio`` is head / small-cnn of the summed wall-clock phase times,
``cpu_ratio`` of the CPU times; the JSON holds every phase.

    nice -n 19 python benchmarks/frozen_cycle.py --json results/benchmarks/frozen_cycle.json
    python benchmarks/frozen_cycle.py --pool 2000 --budget 50 --epochs 1 --strategies random badge   # smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from albench.config import OptimizerConfig, ScheduleConfig, TrainConfig  # noqa: E402
from albench.data.augment import BatchTransform  # noqa: E402
from albench.engine.inference import compute_outputs, seed_stochastic  # noqa: E402
from albench.engine.train import Trainer  # noqa: E402
from albench.features import FeatureTransform  # noqa: E402
from albench.models.registry import build_model  # noqa: E402
from albench.strategies.base import Inputs, Need, PoolState, PrepareContext  # noqa: E402
from albench.strategies.registry import make_strategy  # noqa: E402
from albench.tasks import make_task  # noqa: E402
from albench.toolkit.seeding import derive_seed, numpy_rng, seeded_init, torch_generator  # noqa: E402

STRATEGIES = {
    "random": {}, "entropy": {}, "margin": {}, "coreset": {}, "badge": {}, "bald": {},
    "typiclust": {"representation": "features"}, "probcover": {"representation": "features"},
}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def load_pool(data: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(data / "cifar10.npz") as z:
        x = torch.from_numpy(np.ascontiguousarray(z["x_train"][:n].transpose(0, 3, 1, 2)))
        y = torch.from_numpy(z["y_train"][:n].astype(np.int64))
    return x, y


@torch.inference_mode()
def random_cnn_features(x: torch.Tensor, width: int = 64) -> np.ndarray:
    """(N, 8 * width) pooled embeddings of a seeded, randomly initialised small-cnn."""
    with seeded_init(0):
        net = build_model("small-cnn", num_classes=10, in_channels=3, image_size=(32, 32), params={"width": width})
    net.eval().to(memory_format=torch.channels_last)
    tf = BatchTransform(MEAN, STD)
    out = [net(tf.test(x[s:s + 1024]).contiguous(memory_format=torch.channels_last)).embedding
           for s in range(0, len(x), 1024)]
    return torch.cat(out).numpy().astype(np.float32)


def one_cycle(kind: str, name: str, *, x_img, feats, y, labeled, budget, epochs, seed=0) -> dict:
    """Seconds of train, inference and select of one cycle of strategy ``name`` on ``kind``
    (``head`` or ``small-cnn``)."""
    task = make_task("classification", 10, None)
    if kind == "head":
        x = torch.from_numpy(feats)
        transform, channels_last = FeatureTransform(), False
        make = lambda: build_model("head", num_classes=10, in_channels=3, image_size=(32, 32),  # noqa: E731
                                   params={"features": "simclr", "dropout": 0.5}, in_features=feats.shape[1])
    else:
        x = x_img
        transform, channels_last = BatchTransform(MEAN, STD, crop_padding=4, hflip=True), True
        make = lambda: build_model("small-cnn", num_classes=10, in_channels=3, image_size=(32, 32),  # noqa: E731
                                   params={"width": 32, "dropout": 0.5})
    cfg = TrainConfig(epochs=epochs, batch_size=64, channels_last=channels_last,
                      optimizer=OptimizerConfig(lr=0.05), schedule=ScheduleConfig(name="constant"))
    strategy = make_strategy(name, STRATEGIES[name])
    n = len(y)
    pool = PoolState(images=x_img, labeled=labeled, labeled_targets=y[torch.from_numpy(labeled)], num_classes=10)
    if name in ("typiclust", "probcover"):  # their prepare (ProbCover's graph) is outside the cycle
        strategy.prepare(PrepareContext(pool=pool, test_images=x_img[:0], mean=MEAN, std=STD,
                                        device=torch.device("cpu"), seed=seed, cycles=2, initial=len(labeled),
                                        budget=budget, pool_fingerprint="", cache_dir=Path("/nonexistent"),
                                        run_dir=Path("/nonexistent"), log=lambda s: None, features=feats,
                                        features_info={}))
    secs, cpu = {}, {}
    torch.manual_seed(derive_seed(seed, "init", 1))
    t0, c0 = time.perf_counter(), time.process_time()
    model = make()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    Trainer(model=model, aux=None, task=task, transform=transform, cfg=cfg, device=torch.device("cpu"), amp=False,
            order_gen=torch_generator(seed, "order", 1), aug_gen=torch_generator(seed, "augment", 1)).fit(
        x, y, rows=torch.from_numpy(np.sort(labeled)))
    secs["train"], cpu["train"] = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    needs = seed_stochastic(strategy.needs_for("classification"), derive_seed(seed, "stochastic", 1))
    candidates = np.asarray(strategy.candidates(cycle=1, pool=pool, rng=numpy_rng(seed, "candidates", 1)))

    def outputs(idx):
        from albench.strategies.base import Outputs

        if not (needs - {Need.LABELED}):
            return Outputs(indices=idx)
        return compute_outputs(model=model, aux=None, task=task, needs=needs, images=x, indices=idx,
                               transform=transform, batch_size=1024, device=torch.device("cpu"),
                               channels_last=channels_last)

    inputs = Inputs(candidates=outputs(candidates), labeled=outputs(labeled) if Need.LABELED in needs else None,
                    device=torch.device("cpu"))
    secs["inference"], cpu["inference"] = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    new = strategy.select(cycle=1, budget=budget, pool=pool, inputs=inputs, rng=numpy_rng(seed, "select", 1))
    secs["select"], cpu["select"] = time.perf_counter() - t0, time.process_time() - c0
    assert len(np.unique(new)) == budget and not np.isin(new, labeled).any()
    secs["cycle"] = secs["train"] + secs["inference"] + secs["select"]
    secs.update({f"cpu_{k}": v for k, v in cpu.items()})
    secs["cpu_cycle"] = cpu["train"] + cpu["inference"] + cpu["select"]
    return secs


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--pool", type=int, default=50_000)
    p.add_argument("--labeled", type=int, default=1000)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--json", type=Path, default=REPO / "results" / "benchmarks" / "frozen_cycle.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    x_img, y = load_pool(a.data, a.pool)
    t0 = time.perf_counter()
    feats = random_cnn_features(x_img)
    feature_seconds = time.perf_counter() - t0
    labeled = np.sort(np.random.default_rng(0).choice(a.pool, size=a.labeled, replace=False)).astype(np.int64)
    for kind in ("head", "small-cnn"):  # warm-up: first-call costs (allocators, kernels) stay out of the timings
        one_cycle(kind, "random", x_img=x_img[:256], feats=feats[:256], y=y[:256],
                  labeled=np.arange(64, dtype=np.int64), budget=8, epochs=1)
    out = {"workload": {"pool": a.pool, "labeled": a.labeled, "budget": a.budget, "epochs": a.epochs,
                        "batch_size": 64, "feature_dim": int(feats.shape[1]), "threads": a.threads,
                        "feature_seconds": round(feature_seconds, 3)},
           "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
           "strategies": {}}
    for name in a.strategies:
        row = {}
        for kind in ("head", "small-cnn"):
            row[kind] = {k: round(v, 4) for k, v in one_cycle(kind, name, x_img=x_img, feats=feats, y=y,
                                                               labeled=labeled, budget=a.budget,
                                                               epochs=a.epochs).items()}
        row["ratio"] = round(row["head"]["cycle"] / row["small-cnn"]["cycle"], 5)
        row["cpu_ratio"] = round(row["head"]["cpu_cycle"] / row["small-cnn"]["cpu_cycle"], 5)
        out["strategies"][name] = row
        print(f"{name:10s} head {row['head']['cycle']:8.2f} s  small-cnn {row['small-cnn']['cycle']:8.2f} s  "
              f"ratio {row['ratio']:.4f} (cpu {row['cpu_ratio']:.4f})  (head train {row['head']['train']:.2f} inf {row['head']['inference']:.2f} "
              f"sel {row['head']['select']:.2f}; cnn train {row['small-cnn']['train']:.2f} "
              f"inf {row['small-cnn']['inference']:.2f} sel {row['small-cnn']['select']:.2f})", flush=True)
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
