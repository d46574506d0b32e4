"""Training throughput (images/s): albench's tensor loop against a plain torchvision DataLoader + PIL loop.

Both train the same network (same initial weights, optimiser, batch size and augmentation: random
crop 32 with 4-pixel zero padding, horizontal flip, normalisation) for one epoch over the same
images. Ours keeps the uint8 images as one tensor on the device and augments whole batches there;
the baseline is the pattern of the official AL repos: a Dataset returning PIL images, torchvision
transforms per image, and a DataLoader (measured with 0 and 2 worker processes). Ours runs with the
harness's default fast path: channels_last, and glibc malloc keeping freed buffers in the process
(albench.engine.malloc; the engine applies it at the start of every run). Attribution cases show what
each part buys: the plain loop given channels_last, and our loop with glibc's default malloc.

The malloc settings are process-wide and cannot be undone, so the order of the tests matters: the
baselines and the default-malloc case are defined (and so run) before the case that applies them,
and every result records the process's malloc state (``extra_info["malloc"]``).

Data: the first N images of the real CIFAR-10 (../shared/data/cifar10.npz) when present, else random
images of the same shape (stated in the results' extra_info).

    pytest benchmarks/test_train_throughput.py --benchmark-json results/benchmarks/train_throughput.json

On a CUDA machine the same benchmarks also run on the GPU (small-cnn and resnet18-cifar).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

N_IMAGES = 4096
BATCH = 128
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10.npz"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data():
    if SHARED.exists():
        with np.load(SHARED) as d:
            return d["x_train"][:N_IMAGES], d["y_train"][:N_IMAGES].astype(np.int64), "cifar10 (real)"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (N_IMAGES, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, N_IMAGES),
            "synthetic")


X_NHWC, Y, SOURCE = _data()


def _model(name: str, device: str):
    from albench.models.registry import build_model

    torch.manual_seed(0)
    return build_model(name, num_classes=10, in_channels=3, image_size=(32, 32)).to(device)


def _opt(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def _ours_epoch_fn(model_name: str, device: str, tune: bool = True):
    from albench.config import TrainConfig
    from albench.data.augment import BatchTransform
    from albench.engine.malloc import tune_malloc
    from albench.engine.train import Trainer
    from albench.tasks import ClassificationTask

    if tune:
        tune_malloc()  # as the engine does when a run starts
    dev = torch.device(device)
    cfg = TrainConfig(epochs=10 ** 6, batch_size=BATCH, amp="auto")  # the default fast path
    model = _model(model_name, device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    trainer = Trainer(model=model, aux=None, task=ClassificationTask(10), cfg=cfg, device=dev,
                      amp=dev.type == "cuda",
                      transform=BatchTransform(MEAN, STD, crop_padding=4, hflip=True, device=dev),
                      order_gen=torch.Generator().manual_seed(0),
                      aug_gen=torch.Generator(device=dev).manual_seed(0))
    x = torch.from_numpy(X_NHWC).permute(0, 3, 1, 2).contiguous().to(dev)
    y = torch.from_numpy(Y).to(dev)

    def run():
        trainer.train_epoch(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return run


class _PILDataset(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def _dataloader_epoch_fn(model_name: str, device: str, workers: int, channels_last: bool = False):
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    loader = torch.utils.data.DataLoader(_PILDataset(X_NHWC, Y, transform), batch_size=BATCH, shuffle=True,
                                         num_workers=workers, pin_memory=device == "cuda",
                                         persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(0))
    model = _model(model_name, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _opt(model)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(xb).logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def _measure(benchmark, run, **info):
    from albench.engine.malloc import malloc_state

    run()  # warm-up epoch (allocator, worker start-up, cuDNN autotuning)
    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(info, images=N_IMAGES, data=SOURCE, threads=torch.get_num_threads(),
                                malloc=malloc_state(),
                                images_per_s=N_IMAGES / benchmark.stats.stats.mean)


MODELS = ["small-cnn"] + (["resnet18-cifar"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_name", MODELS)
def test_dataloader_pil_loop(benchmark, model_name, device, workers):
    if model_name == "resnet18-cifar" and device == "cpu":
        pytest.skip("resnet18-cifar throughput is measured on the GPU only")
    benchmark.group = f"train-{model_name}-{device}"
    _measure(benchmark, _dataloader_epoch_fn(model_name, device, workers), loop=f"dataloader-pil-w{workers}",
             model=model_name, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_dataloader_pil_loop_channels_last(benchmark, device):
    """Attribution, not the baseline: the plain loop given our memory format, so the table separates
    what channels_last buys from what tensors-on-device and batched augmentation buy."""
    benchmark.group = f"train-small-cnn-{device}"
    _measure(benchmark, _dataloader_epoch_fn("small-cnn", device, 0, channels_last=True),
             loop="dataloader-pil-w0-channels-last", model="small-cnn", device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_albench_loop_default_malloc(benchmark, device):
    """Attribution: our loop with glibc's default malloc settings (defined before test_albench_loop,
    which applies ours for the rest of the process)."""
    benchmark.group = f"train-small-cnn-{device}"
    _measure(benchmark, _ours_epoch_fn("small-cnn", device, tune=False), loop="albench-default-malloc",
             model="small-cnn", device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_name", MODELS)
def test_albench_loop(benchmark, model_name, device):
    if model_name == "resnet18-cifar" and device == "cpu":
        pytest.skip("resnet18-cifar throughput is measured on the GPU only")
    benchmark.group = f"train-{model_name}-{device}"
    _measure(benchmark, _ours_epoch_fn(model_name, device), loop="albench", model=model_name, device=device)
