"""Dataset loaders on tiny fixture files written in their real formats."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from albench.config import DatasetConfig
from albench.data.cifar import CLASSES, IMBALANCED_COUNTS, imbalanced_indices
from albench.data.registry import get_dataset, load_dataset
from albench.errors import ConfigError


def _fake_cifar(n_per_batch=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(5 * n_per_batch, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=5 * n_per_batch).astype(np.int64)
    x_test = rng.integers(0, 256, size=(n_test, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test).astype(np.int64)
    return x_train, y_train, x_test, y_test


def write_cifar_batches(root, x_train, y_train, x_test, y_test):
    """torchvision's cifar-10-batches-py layout: pickled dicts, rows of 3072 bytes in R, G, B planes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per = len(x_train) // 5

    def dump(name, x, y):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # NHWC -> planar CHW rows
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": [int(v) for v in y], "data": rows,
                         "filenames": [f"{i}.png" for i in range(len(x))]}, fh)

    for i in range(5):
        dump(f"data_batch_{i + 1}", x_train[i * per:(i + 1) * per], y_train[i * per:(i + 1) * per])
    dump("test_batch", x_test, y_test)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": per}, fh)
    return folder


def write_cifar_npz(path, x_train, y_train, x_test, y_test):
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=np.array(CLASSES))
    return path


def test_cifar10_reads_both_layouts_identically(tmp_path):
    arrays = _fake_cifar()
    write_cifar_batches(tmp_path / "tv", *arrays)
    (tmp_path / "np").mkdir()
    write_cifar_npz(tmp_path / "np" / "cifar10.npz", *arrays)
    a = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path / "tv")))
    b = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path / "np")))
    c = load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path / "np" / "cifar10.npz")))
    x_train, y_train, x_test, y_test = arrays
    for ds in (a, b, c):
        assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (30, 3, 32, 32)
        # pixel (image 3, row 5, col 7) keeps its RGB values and channel order
        assert ds.x_train[3, :, 5, 7].tolist() == x_train[3, 5, 7].tolist()
        assert torch.equal(ds.x_test, torch.from_numpy(x_test).permute(0, 3, 1, 2))
        assert ds.y_train.tolist() == y_train.tolist() and ds.y_test.tolist() == y_test.tolist()
        assert ds.classes == CLASSES
    assert a.info["layout"] == "batches" and b.info["layout"] == "npz"
    assert get_dataset("cifar10").train_size(DatasetConfig(name="cifar10", root=str(tmp_path / "np"))) == 30


def test_cifar10_root_without_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="holds no CIFAR-10"):
        get_dataset("cifar10").check(DatasetConfig(name="cifar10", root=str(tmp_path)), "datasets[0]")


def test_cifar10_never_downloads_unless_asked(tmp_path, monkeypatch):
    import torchvision

    def boom(*a, **k):
        raise AssertionError("download attempted")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", boom)
    with pytest.raises(ConfigError):
        load_dataset(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_imbalanced_composition_matches_the_paper(tmp_path):
    # a full-size label vector (5,000 per class) with tiny 2x2 images keeps the fixture small
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 5000)
    rng.shuffle(y)
    x = rng.integers(0, 256, size=(50000, 2, 2, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(20, 2, 2, 3), dtype=np.uint8)
    y_test = np.arange(20) % 10
    write_cifar_npz(tmp_path / "cifar10.npz", x, y, x_test, y_test)
    cfg = DatasetConfig(name="cifar10-imbalanced", root=str(tmp_path))
    ds = load_dataset(cfg)
    assert ds.class_counts() == [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000]
    assert IMBALANCED_COUNTS == ds.class_counts()
    assert ds.x_train.shape[0] == 27500 == get_dataset("cifar10-imbalanced").train_size(cfg)
    assert ds.y_test.tolist() == y_test.tolist()  # the test set is untouched
    # the subsample is seeded: the same every load, another seed gives another subset
    again = imbalanced_indices(y, IMBALANCED_COUNTS, 0)
    other = imbalanced_indices(y, IMBALANCED_COUNTS, 1)
    assert np.array_equal(again, imbalanced_indices(y, IMBALANCED_COUNTS, 0))
    assert not np.array_equal(again, other)
    assert torch.equal(ds.x_train, torch.from_numpy(x[again]).permute(0, 3, 1, 2))


def test_digits_is_embedded_and_split_is_fixed():
    a = load_dataset(DatasetConfig(name="digits"))
    b = load_dataset(DatasetConfig(name="digits"))
    assert a.x_train.shape == (1500, 1, 8, 8) and a.x_test.shape == (297, 1, 8, 8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert int(a.x_train.max()) == 255 and a.num_classes == 10
    assert not a.hflip


def test_npz_bring_your_own(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", x_train=rng.integers(0, 256, (12, 5, 6), dtype=np.uint8),
             y_train=np.arange(12) % 3, x_test=rng.integers(0, 256, (4, 5, 6), dtype=np.uint8),
             y_test=np.arange(4) % 3, classes=np.array(["a", "b", "c"]))
    cfg = DatasetConfig(name="npz", root=str(tmp_path), params={"file": "mine.npz", "hflip": False})
    spec = get_dataset("npz")
    spec.check(cfg, "datasets[0]")
    ds = spec.load(cfg)
    assert ds.x_train.shape == (12, 1, 5, 6) and ds.classes == ["a", "b", "c"] and not ds.hflip
    assert spec.train_size(cfg) == 12
    with pytest.raises(ConfigError, match="params.nope"):
        spec.check(DatasetConfig(name="npz", root=str(tmp_path / "mine.npz"), params={"nope": 1}), "datasets[0]")


def test_imagefolder_bring_your_own(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(d / f"{i}.png")
    cfg = DatasetConfig(name="imagefolder", root=str(tmp_path), params={"image_size": [8, 8]})
    spec = get_dataset("imagefolder")
    spec.check(cfg, "datasets[0]")
    ds = spec.load(cfg)
    assert ds.x_train.shape == (6, 3, 8, 8) and ds.x_test.shape == (2, 3, 8, 8)
    assert ds.classes == ["cat", "dog"] and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    # without test/, a seeded stratified fraction of train is held out
    import shutil

    shutil.rmtree(tmp_path / "test")
    cfg2 = DatasetConfig(name="imagefolder", root=str(tmp_path), params={"image_size": [8, 8],
                                                                        "test_fraction": 0.3})
    ds2 = spec.load(cfg2)
    assert ds2.x_train.shape[0] + ds2.x_test.shape[0] == 6 and sorted(ds2.y_test.tolist()) == [0, 1]


@pytest.mark.slow
def test_real_cifar10_checks(request):
    """The shared CIFAR-10 copy loads and matches its documented checks."""
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "cifar10.npz").exists():
        pytest.skip(f"no shared CIFAR-10 at {SHARED_DATA} (only present on the project's machines)")
    ds = load_dataset(DatasetConfig(name="cifar10", root=str(SHARED_DATA)))
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    assert ds.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert ds.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    mean = ds.x_train.double().mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([125.31, 122.95, 113.87], dtype=torch.float64), atol=0.01)


# ---------------------------------------------------------------------------------------------
# bad data files: refused at config load (exit 2, one line naming the file and the array), never
# mid-run (issue 16)


def _good_arrays():
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), "y_train": np.arange(40) % 4,
            "x_test": rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), "y_test": np.arange(8) % 4}


def _npz(**change):
    def write(path):
        arrays = {**_good_arrays(), **change}
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return write


def _not_npz(text: bytes):
    def write(path):
        path.write_bytes(text)
    return write


def _truncated(path):
    _npz()(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


BAD_NPZ = [  # (description, writer, substrings of the error line besides the file name)
    ("label out of range of classes", _npz(classes=np.array(["a", "b", "c"])), ["'y_train'", "label 3", "3 classes"]),
    ("negative label", _npz(y_test=np.array([0, 1, 2, 3, -1, 0, 1, 2])), ["'y_test'", "negative"]),
    ("float labels", _npz(y_train=(np.arange(40) % 4).astype(np.float32)), ["'y_train'", "float32 labels"]),
    ("string labels", _npz(y_train=np.array(["cat", "dog"] * 20)), ["'y_train'", "integer class ids"]),
    ("a single class", _npz(y_train=np.zeros(40, dtype=np.int64), y_test=np.zeros(8, dtype=np.int64)),
     ["'y_train'", "single class"]),
    ("a class id with no train image", _npz(y_train=np.arange(40) % 2 * 3), ["'y_train'", "no image of class(es) [1, 2]"]),
    ("float images", _npz(x_train=np.random.default_rng(0).random((40, 8, 8, 3))), ["'x_train'", "float64", "uint8"]),
    ("labels and images disagree in count", _npz(y_train=np.arange(39) % 4), ["'y_train'", "one label per image"]),
    ("2-D labels", _npz(y_train=(np.arange(40) % 4)[:, None]), ["'y_train'", "(40, 1)"]),
    ("test images of another size", _npz(x_test=np.zeros((8, 9, 9, 3), dtype=np.uint8)), ["'x_test'", "(3, 9, 9)"]),
    ("no images", _npz(x_train=np.zeros((0, 8, 8, 3), dtype=np.uint8), y_train=np.zeros(0, dtype=np.int64)),
     ["'x_train'", "N >= 1"]),
    ("missing array", _npz(y_test=None), ["lacks arrays ['y_test']"]),
    ("classes not names", _npz(classes=np.arange(4)), ["'classes'", "1-D array of class names"]),
    ("pickled classes", _npz(classes=np.array([{"a": 1}] * 4, dtype=object)), ["cannot be read"]),
    ("a text file", _not_npz(b"x_train,y_train\n1,2\n"), ["not a readable npz"]),
    ("an empty file", _not_npz(b""), ["not a readable npz"]),
    ("a truncated npz", _truncated, ["not a readable npz"]),
]


@pytest.mark.parametrize("desc,write,needles", BAD_NPZ, ids=[b[0] for b in BAD_NPZ])
def test_bad_npz_is_refused_at_config_load(desc, write, needles, tiny_raw, tmp_path, capsys):
    from albench.cli import main
    from tests.conftest import write_yaml

    data = tmp_path / "mine.npz"
    write(data)
    raw = {**tiny_raw, "dataset": {"name": "npz", "root": str(data)}, "al": {"initial": 4, "budget": 4, "cycles": 2}}
    rc = main(["run", str(write_yaml(tmp_path / "c.yaml", raw)), "--dry-run"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("albench: error: dataset.root: mine.npz") and "fix:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "results").exists()
    # loading it directly (no config check first) is refused the same way, not deep in training
    with pytest.raises(ConfigError, match="mine.npz"):
        load_dataset(DatasetConfig(name="npz", root=str(data)))


def test_a_good_npz_passes_the_same_checks(tiny_raw, tmp_path, capsys):
    from albench.cli import main
    from tests.conftest import write_yaml

    _npz(classes=np.array(["a", "b", "c", "d"]))(tmp_path / "mine.npz")
    raw = {**tiny_raw, "dataset": {"name": "npz", "root": str(tmp_path / "mine.npz")},
           "al": {"initial": 4, "budget": 4, "cycles": 2}}
    assert main(["run", str(write_yaml(tmp_path / "c.yaml", raw)), "--dry-run"]) == 0
    ds = load_dataset(DatasetConfig(name="npz", root=str(tmp_path / "mine.npz")))
    assert ds.num_classes == 4 and ds.x_train.shape == (40, 3, 8, 8)


def test_cifar10_npz_with_labels_beyond_its_ten_classes_is_refused(tmp_path):
    x_train, y_train, x_test, y_test = _fake_cifar()
    y_train[3] = 10
    write_cifar_npz(tmp_path / "cifar10.npz", x_train, y_train, x_test, y_test)
    with pytest.raises(ConfigError, match=r"datasets\[0\]\.root: cifar10.npz: array 'y_train' holds label 10"):
        get_dataset("cifar10").check(DatasetConfig(name="cifar10", root=str(tmp_path)), "datasets[0]")


def _folder(layout: dict[str, int], *, bad_file: str | None = None):
    """root/<split>/<class>/ with ``n`` PNGs each: layout {'train/cat': 3, ...}."""
    def write(root):
        from PIL import Image

        rng = np.random.default_rng(0)
        for folder, n in layout.items():
            (root / folder).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
        if bad_file:
            (root / bad_file).write_bytes(b"not a png")
    return write


BAD_FOLDERS = [  # (description, writer, params, substrings)
    ("class folders without images", _folder({"train/cat": 0, "train/dog": 0}), {}, ["hold no images"]),
    ("one class folder empty", _folder({"train/cat": 3, "train/dog": 0}), {}, ["['dog']", "hold no images"]),
    ("a single class", _folder({"train/cat": 5}), {}, ["single class folder"]),
    ("an empty test class", _folder({"train/cat": 3, "train/dog": 3, "test/cat": 1, "test/dog": 0}), {},
     ["['dog']", "test"]),
    ("test classes differ", _folder({"train/cat": 3, "train/dog": 3, "test/cat": 1, "test/cow": 1}), {},
     ["different class folders"]),
    ("one image of a class and no test folder", _folder({"train/cat": 3, "train/dog": 1}), {}, ["'dog'", "one image"]),
    ("test fraction holding out too few", _folder({"train/cat": 3, "train/dog": 3}), {"test_fraction": 0.1},
     ["test_fraction", "holds out 1 of 6"]),
    ("test fraction of 1", _folder({"train/cat": 3, "train/dog": 3}), {"test_fraction": 1}, ["test_fraction"]),
]


@pytest.mark.parametrize("desc,write,params,needles", BAD_FOLDERS, ids=[b[0] for b in BAD_FOLDERS])
def test_bad_image_folder_is_refused_at_config_load(desc, write, params, needles, tiny_raw, tmp_path, capsys):
    from albench.cli import main
    from tests.conftest import write_yaml

    write(tmp_path / "imgs")
    raw = {**tiny_raw, "al": {"initial": 2, "budget": 1, "cycles": 2},
           "dataset": {"name": "imagefolder", "root": str(tmp_path / "imgs"), "params": {"image_size": [6, 6], **params}}}
    rc = main(["run", str(write_yaml(tmp_path / "c.yaml", raw)), "--dry-run"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("albench: error: dataset.") and "fix:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "results").exists()


def test_an_image_that_does_not_decode_is_named_at_load(tmp_path):
    _folder({"train/cat": 3, "train/dog": 3}, bad_file="train/dog/broken.png")(tmp_path)
    with pytest.raises(ConfigError, match=r"broken\.png cannot be decoded"):
        load_dataset(DatasetConfig(name="imagefolder", root=str(tmp_path), params={"image_size": [6, 6]}))
