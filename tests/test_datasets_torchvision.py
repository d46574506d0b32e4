"""CIFAR-100, SVHN, MNIST, Fashion-MNIST and STL-10 read from torchvision's layouts, on tiny fixture
files written here in the real binary formats."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from albench.cli import main
from albench.config import DatasetConfig
from albench.data.registry import dataset_names, get_dataset, load_dataset
from albench.errors import ConfigError
from tests.conftest import write_yaml

RNG = np.random.default_rng(0)


def _images(n, c, h, w):
    return RNG.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _labels(n, k=10):
    return np.arange(n) % k  # every class present


# --------------------------------------------------------------------------- writers (real formats)
def write_cifar100(root: Path, n_train=40, n_test=20):
    """cifar-100-python/{train,test,meta}: pickled dicts, rows of 3,072 bytes in R, G, B planes."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(n, 3, 32, 32)
        fine = _labels(n, 100) if n >= 100 else (np.arange(n) * 7) % 100
        coarse = fine // 5
        with open(folder / split, "wb") as fh:
            pickle.dump({"filenames": [f"{i}.png" for i in range(n)], "batch_label": split,
                         "fine_labels": [int(v) for v in fine], "coarse_labels": [int(v) for v in coarse],
                         "data": x.reshape(n, 3072)}, fh)
        out[split] = (x, fine, coarse)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, fh)
    return out


def write_svhn(root: Path, n_train=40, n_test=20):
    """train_32x32.mat / test_32x32.mat: X uint8 (32, 32, 3, N), y (N, 1) in 1..10 (10 is digit 0)."""
    import scipy.io as sio

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(n, 3, 32, 32)
        digit = _labels(n)
        sio.savemat(root / f"{split}_32x32.mat",
                    {"X": x.transpose(2, 3, 1, 0), "y": np.where(digit == 0, 10, digit).astype(np.uint8)[:, None]})
        out[split] = (x, digit)
    return out


def _idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx_set(root: Path, folder: str, gz: bool, n_train=40, n_test=20):
    """<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x, y = _images(n, 1, 28, 28)[:, 0], _labels(n)
        for stem, arr in ((f"{split}-images-idx3-ubyte", x), (f"{split}-labels-idx1-ubyte", y)):
            data = _idx_bytes(arr)
            if gz:
                with gzip.open(raw / f"{stem}.gz", "wb") as fh:
                    fh.write(data)
            else:
                (raw / stem).write_bytes(data)
        out[split] = (x, y)
    return out


def write_stl10(root: Path, n_train=30, n_test=20, unlabeled=5):
    """stl10_binary/*_X.bin (N x 3 x 96 x 96, planes column-major), *_y.bin (1..10), class_names.txt."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _images(n, 3, 96, 96), _labels(n)
        (folder / f"{split}_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())  # column-major planes
        (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
        out[split] = (x, y)
    (folder / "unlabeled_X.bin").write_bytes(_images(unlabeled, 3, 96, 96).tobytes())
    (folder / "class_names.txt").write_text("\n".join(
        ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n")
    return out


# --------------------------------------------------------------------------- readers
def test_the_five_datasets_are_listed(capsys):
    assert {"cifar100", "svhn", "mnist", "fashion-mnist", "stl10"} <= set(dataset_names())
    assert main(["list", "datasets"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"cifar100", "svhn", "mnist", "fashion-mnist", "stl10"} <= names
    for name, c in (("cifar100", 3), ("svhn", 3), ("mnist", 1), ("fashion-mnist", 1), ("stl10", 3)):
        assert get_dataset(name).channels(DatasetConfig(name=name)) == c  # for config-time checks


def test_cifar100_reads_the_pickles_fine_and_coarse(tmp_path):
    arrays = write_cifar100(tmp_path)
    ds = load_dataset(DatasetConfig(name="cifar100", root=str(tmp_path)))
    x, fine, coarse = arrays["train"]
    assert ds.x_train.shape == (40, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.x_train[3, :, 5, 7].tolist() == x[3, :, 5, 7].tolist()  # R, G, B planes kept
    assert ds.y_train.tolist() == fine.tolist() and ds.num_classes == 100 and ds.classes[7] == "fine7"
    assert torch.equal(ds.x_test, torch.from_numpy(arrays["test"][0]))
    cfg = DatasetConfig(name="cifar100", root=str(tmp_path), params={"labels": "coarse"})
    co = load_dataset(cfg)
    assert co.y_train.tolist() == coarse.tolist() and co.num_classes == 20 and co.classes[0] == "coarse0"
    assert get_dataset("cifar100").train_size(cfg) == 40
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.params\.labels"):
        get_dataset("cifar100").check(DatasetConfig(name="cifar100", root=str(tmp_path),
                                                    params={"labels": "medium"}), "datasets[0]")


def test_svhn_reads_the_mat_files_and_maps_label_10_to_0(tmp_path):
    arrays = write_svhn(tmp_path)
    ds = load_dataset(DatasetConfig(name="svhn", root=str(tmp_path)))
    x, digit = arrays["train"]
    assert ds.x_train.shape == (40, 3, 32, 32)
    assert ds.x_train[5, :, 2, 9].tolist() == x[5, :, 2, 9].tolist()  # (H, W, C, N) -> (N, C, H, W)
    assert torch.equal(ds.x_train, torch.from_numpy(x))
    assert ds.y_train.tolist() == digit.tolist() and ds.y_train[0] == 0 and ds.hflip is False
    assert ds.y_test.tolist() == arrays["test"][1].tolist()
    assert get_dataset("svhn").train_size(DatasetConfig(name="svhn", root=str(tmp_path))) == 40
    # extra: true needs extra_32x32.mat, and says so at config load
    with pytest.raises(ConfigError, match="extra_32x32.mat"):
        get_dataset("svhn").check(DatasetConfig(name="svhn", root=str(tmp_path), params={"extra": True}),
                                  "datasets[0]")


@pytest.mark.parametrize("name, folder, gz", [("mnist", "MNIST", False), ("mnist", "MNIST", True),
                                              ("fashion-mnist", "FashionMNIST", True),
                                              ("fashion-mnist", "FashionMNIST", False)])
def test_mnist_family_reads_idx_files_gzipped_or_not(tmp_path, name, folder, gz):
    arrays = write_idx_set(tmp_path, folder, gz)
    ds = load_dataset(DatasetConfig(name=name, root=str(tmp_path)))
    x, y = arrays["train"]
    assert ds.x_train.shape == (40, 1, 28, 28) and ds.channels == 1
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(x)) and ds.y_train.tolist() == y.tolist()
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert ds.info["layout"] == f"{folder}/raw"
    assert get_dataset(name).train_size(DatasetConfig(name=name, root=str(tmp_path))) == 40


def test_idx_with_a_wrong_magic_or_size_is_refused(tmp_path):
    from albench.data.mnist import read_idx

    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">i", 3) + b"abc")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">i", 5) + b"abc")
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")


def test_stl10_reads_the_labeled_binaries_and_never_the_unlabeled_split(tmp_path):
    arrays = write_stl10(tmp_path)
    ds = load_dataset(DatasetConfig(name="stl10", root=str(tmp_path)))
    x, y = arrays["train"]
    assert ds.x_train.shape == (30, 3, 96, 96)
    assert ds.x_train[4, 2, 10, 80].item() == x[4, 2, 10, 80]  # row 10, column 80: column-major undone
    assert torch.equal(ds.x_train, torch.from_numpy(x)) and ds.y_train.tolist() == y.tolist()
    assert ds.classes[2] == "car" and ds.y_test.shape == (20,)
    assert get_dataset("stl10").train_size(DatasetConfig(name="stl10", root=str(tmp_path))) == 30


@pytest.mark.parametrize("name, needed", [("cifar100", "cifar-100-python/train"), ("svhn", "train_32x32.mat"),
                                          ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                                          ("fashion-mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
                                          ("stl10", "stl10_binary/train_X.bin")])
def test_missing_files_are_refused_at_config_load_naming_the_layout(tmp_path, name, needed):
    with pytest.raises(ConfigError) as err:
        get_dataset(name).check(DatasetConfig(name=name, root=str(tmp_path)), "datasets[0]")
    assert err.value.field == "datasets[0].root" and needed in str(err.value) and "download: true" in str(err.value)


def test_missing_idx_files_are_listed_under_both_accepted_names_with_the_layout(tmp_path):
    with pytest.raises(ConfigError) as err:
        get_dataset("fashion-mnist").check(DatasetConfig(name="fashion-mnist", root=str(tmp_path)), "datasets[0]")
    text = str(err.value)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for stem in stems:
        assert f"FashionMNIST/raw/{stem}[.gz]" in text  # the missing files, gzipped or not
    assert "uncompressed or gzipped: both are read" in text
    assert "FashionMNIST/raw/ holding train-images-idx3-ubyte[.gz]" in err.value.fix  # the layout under the root


@pytest.mark.parametrize("where, hint", [
    ("flat", "{root} holds train-images-idx3-ubyte.gz directly, but the layout wants it in FashionMNIST/raw/"),
    ("raw", "{root} is inside the layout: set datasets[0].root to {top}"),
    ("deeper", "found {top}/FashionMNIST/raw/train-images-idx3-ubyte.gz: set datasets[0].root to {top}"),
])
def test_misplaced_idx_files_get_a_hint_where_to_put_them(tmp_path, where, hint):
    write_idx_set(tmp_path / "top", "FashionMNIST", gz=True)
    top = tmp_path / "top"
    if where == "flat":  # the four files as downloaded, straight into one folder
        root = tmp_path / "flat"
        (top / "FashionMNIST" / "raw").rename(root)
    elif where == "raw":
        root = top / "FashionMNIST" / "raw"
    else:
        root = tmp_path
    with pytest.raises(ConfigError) as err:
        get_dataset("fashion-mnist").check(DatasetConfig(name="fashion-mnist", root=str(root)), "datasets[0]")
    assert err.value.fix.startswith(hint.format(root=root, top=top))
    ok = top if where != "flat" else None
    if ok is not None:  # the hint is right: the root it names loads
        get_dataset("fashion-mnist").check(DatasetConfig(name="fashion-mnist", root=str(ok)), "datasets[0]")


@pytest.mark.parametrize("shape", ["dataset", "datasets", "set"])
def test_a_data_root_error_names_the_key_the_config_wrote(tmp_path, tiny_raw, capsys, shape):
    entry = {"name": "fashion-mnist", "root": str(tmp_path)}
    if shape == "datasets":
        tiny_raw.pop("dataset")
        tiny_raw["datasets"] = [entry]
        overrides = []
    elif shape == "dataset":
        tiny_raw["dataset"] = entry
        overrides = []
    else:  # the quickstart's `dataset:` changed from the command line
        overrides = ["--set", "dataset.name=fashion-mnist", "--set", f"dataset.root={tmp_path}"]
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--dry-run", *overrides]) == 2
    err = capsys.readouterr().err
    key = "datasets[0]" if shape == "datasets" else "dataset"
    assert err.startswith(f"albench: error: {key}.root: holds no fashion-mnist")
    assert f"point {key}.root at" in err
    if key == "dataset":
        assert "datasets[0]" not in err


@pytest.mark.parametrize("name, tv_class", [("cifar100", "CIFAR100"), ("svhn", "SVHN"), ("mnist", "MNIST"),
                                            ("fashion-mnist", "FashionMNIST"), ("stl10", "STL10")])
def test_download_only_when_asked_and_an_offline_failure_is_clear(tmp_path, monkeypatch, name, tv_class):
    import urllib.error

    import torchvision

    calls = []

    def offline(root, download=False, **kw):
        calls.append((root, download, kw))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, tv_class, offline)
    with pytest.raises(ConfigError, match="holds no"):  # download: false never calls torchvision
        load_dataset(DatasetConfig(name=name, root=str(tmp_path)))
    assert calls == []
    with pytest.raises(ConfigError) as err:
        load_dataset(DatasetConfig(name=name, root=str(tmp_path), download=True))
    assert calls and calls[0][1] is True  # torchvision's own download, asked for
    assert err.value.field == "dataset.download"
    assert "could not download" in str(err.value) and "name resolution" in str(err.value)
    assert "without internet, copy the files" in str(err.value)


# --------------------------------------------------------------------------- a run on each fixture
WRITERS = {
    "cifar100": lambda root: write_cifar100(root, n_train=120, n_test=20),
    "svhn": write_svhn,
    "mnist": lambda root: write_idx_set(root, "MNIST", gz=True),
    "fashion-mnist": lambda root: write_idx_set(root, "FashionMNIST", gz=False),
    "stl10": write_stl10,
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_run_on_each_fixture_completes(tmp_path, tiny_raw, one_torch_thread, name, capsys):
    WRITERS[name](tmp_path / "data")
    tiny_raw["dataset"] = {"name": name, "root": str(tmp_path / "data")}
    tiny_raw["train"]["epochs"] = 1
    tiny_raw["al"] = {"initial": 10, "budget": 10, "cycles": 2}
    tiny_raw["record"] = {"embeddings": 0}
    cfg = write_yaml(tmp_path / "c.yaml", tiny_raw)
    assert main(["run", str(cfg), "--quiet"]) == 0
    run_dir = tmp_path / "results" / "tiny" / name / "random" / "seed-0"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"
    assert json.loads((run_dir / "run.json").read_text())["dataset"] == name


@pytest.mark.parametrize("name, tv_class, folder", [("mnist", "MNIST", "MNIST"),
                                                    ("fashion-mnist", "FashionMNIST", "FashionMNIST")])
def test_idx_fixtures_read_the_same_through_torchvision(tmp_path, name, tv_class, folder):
    """torchvision's own MNIST reader (it checks no checksums) agrees with ours on the fixture files."""
    import torchvision

    write_idx_set(tmp_path, folder, gz=False)
    ours = load_dataset(DatasetConfig(name=name, root=str(tmp_path)))
    for train in (True, False):
        tv = getattr(torchvision.datasets, tv_class)(str(tmp_path), train=train, download=False)
        x, y = (ours.x_train, ours.y_train) if train else (ours.x_test, ours.y_test)
        assert torch.equal(x[:, 0], tv.data) and torch.equal(y, tv.targets.to(torch.int64))


def test_cifar100_svhn_stl10_fixtures_read_the_same_through_torchvision(tmp_path, monkeypatch):
    """torchvision's own readers agree with ours on the fixture files (their md5 checks, which tiny
    fixtures cannot pass, switched off)."""
    import torchvision
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.STL10, "_check_integrity", lambda self: True)
    write_cifar100(tmp_path / "c")
    write_svhn(tmp_path / "s")
    write_stl10(tmp_path / "t")
    cases = [("cifar100", "c", lambda train: torchvision.datasets.CIFAR100(str(tmp_path / "c"), train=train)),
             ("svhn", "s", lambda train: torchvision.datasets.SVHN(str(tmp_path / "s"), "train" if train else "test")),
             ("stl10", "t", lambda train: torchvision.datasets.STL10(str(tmp_path / "t"), "train" if train else "test"))]
    for name, sub, make in cases:
        ours = load_dataset(DatasetConfig(name=name, root=str(tmp_path / sub)))
        for train in (True, False):
            tv = make(train)
            data = np.asarray(tv.data)
            if name == "cifar100":  # torchvision keeps CIFAR as (N, H, W, C)
                data = data.transpose(0, 3, 1, 2)
            labels = np.asarray(getattr(tv, "targets", None) if name == "cifar100" else tv.labels)
            x, y = (ours.x_train, ours.y_train) if train else (ours.x_test, ours.y_test)
            assert np.array_equal(x.numpy(), data), (name, train)
            assert y.tolist() == labels.tolist(), (name, train)
