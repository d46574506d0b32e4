"""Bad input refused at load time, before anything is queued or written: exit 2, one line naming the
field, no traceback, no folder created (issue 29). Covers configs that would not be what runs
(duplicate YAML keys), refusals that used to come late (device, executor, data files, trackers),
the paths and files that used to raise OSError, and inputs that used to hang (a FIFO)."""

from __future__ import annotations

import copy
import os
import signal
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from albench.cli import main
from albench.config import build_config, read_yaml
from albench.errors import ConfigError
from tests.conftest import TINY, write_yaml

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "pt4al-eccv2022.yaml"


@contextmanager
def no_hang(seconds: int = 60):
    """Fail the test (instead of hanging the suite) when the body blocks longer than ``seconds``."""
    def expired(*_):
        raise AssertionError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _refused(capsys, argv: list[str], *needles: str, written: Path | None = None) -> str:
    with no_hang():
        assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("albench: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    if written is not None:
        assert not os.path.lexists(written), f"{written} was created"
    return err


def _raw(tmp_path, **change) -> dict:
    raw = copy.deepcopy(TINY)
    raw["output"] = str(tmp_path / "results")
    raw.update(change)
    return raw


# ---------------------------------------------------------------------------------------------
# duplicate keys


def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path, capsys):
    text = (f"name: first\noutput: {tmp_path / 'results'}\ndataset: digits\nal: {{initial: 20, budget: 20, cycles: 2}}\n"
            "strategies: [random]\nname: second\n")
    cfg = tmp_path / "twice.yaml"
    cfg.write_text(text)
    _refused(capsys, ["run", str(cfg), "--dry-run"], "CONFIG:", "gives the key 'name' twice (lines 1 and 6)",
             written=tmp_path / "results")
    # a second block that leaves out a key would silently reset it to its default
    cfg.write_text(f"output: {tmp_path / 'results'}\nal:\n  initial: 20\n  cycles: 2\ntrain: {{epochs: 1}}\n"
                   "al:\n  initial: 20\n")
    _refused(capsys, ["run", str(cfg), "--dry-run"], "gives the key 'al' twice (lines 2 and 6)", "keep one 'al:'",
             written=tmp_path / "results")
    cfg.write_text("train:\n  epochs: 3\n  batch_size: 8\n  epochs: 4\n")
    with pytest.raises(ConfigError, match=r"gives the key 'train.epochs' twice \(lines 2 and 4\)"):
        read_yaml(cfg)


def test_merge_keys_may_be_overridden_and_set_values_are_checked_too(tmp_path, capsys):
    cfg = tmp_path / "merge.yaml"
    cfg.write_text("base: &b {epochs: 3, batch_size: 8}\n")
    assert read_yaml(cfg)["base"] == {"epochs": 3, "batch_size": 8}
    cfg.write_text("x: &b {epochs: 3, batch_size: 8}\ntrain:\n  <<: *b\n  epochs: 4\n")
    assert read_yaml(cfg)["train"] == {"epochs": 4, "batch_size": 8}
    _refused(capsys, ["run", "--dry-run", "--out", str(tmp_path / "r"), "--set", "train={epochs: 1, epochs: 2}"],
             "--set train:", "gives the key 'epochs' twice", written=tmp_path / "r")


# ---------------------------------------------------------------------------------------------
# paths the OS cannot take, and files that are not regular files


def test_too_long_paths_and_names_are_bad_input_for_every_command(tmp_path, capsys):
    long_path = str(tmp_path / ("d" * 200) / "/".join(["e" * 200] * 25) / "c.yaml")  # ~5,000 characters
    long_name = str(tmp_path / ("n" * 300 + ".yaml"))  # one component of 300 bytes
    for bad in (long_path, long_name):
        _refused(capsys, ["run", bad, "--dry-run"], "CONFIG:")
        _refused(capsys, ["show", bad], "RESULTS_DIR:")
        _refused(capsys, ["status", bad], "RESULTS_DIR:")
        _refused(capsys, ["report", bad], "RESULTS_DIR:")
        _refused(capsys, ["verify", bad, "--reference", str(REFERENCE)], "RESULTS_DIR:")
        _refused(capsys, ["run", "--dry-run", "--out", bad], "output:", written=Path(bad))
        _refused(capsys, ["status", str(tmp_path), "--config", bad], "CONFIG:")
    _refused(capsys, ["run", "--dry-run", "--out", str(tmp_path / ("o" * 5000))], "output:", "paths stop at 4095")
    _refused(capsys, ["run", "--dry-run", "--out", str(tmp_path / ("o" * 300))], "output:", "a file or folder name stops "
             "at 255")
    _refused(capsys, ["run", "--dry-run", "--out", "/proc/results"], "output:", "points into /proc, a pseudo file "
             "system")  # root's os.access says it could write there
    # an output whose run folders (output/sweep/dataset/strategy/seed-N/...) would exceed PATH_MAX
    deep = str(tmp_path / "/".join(["p" * 250] * 15))
    deep += "/" + "q" * (3990 - len(deep) - 1)  # a valid path of 3,990 bytes
    _refused(capsys, ["run", "--dry-run", "--out", deep], "output:", "makes run folders")


def test_a_fifo_or_a_folder_is_refused_unopened(tmp_path, capsys):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    res = tmp_path / "res"
    res.mkdir()
    _refused(capsys, ["verify", str(res), "--reference", str(fifo)], "--reference:", "is not a regular file (a FIFO)")
    _refused(capsys, ["verify", str(res), "--reference", str(tmp_path)], "--reference:", "(a folder)")
    _refused(capsys, ["run", str(fifo), "--dry-run"], "CONFIG:", "(a FIFO)")
    _refused(capsys, ["run", str(tmp_path), "--dry-run"], "CONFIG:", "(a folder)")
    _refused(capsys, ["show", str(fifo)], "RESULTS_DIR:", "is not a folder")


# ---------------------------------------------------------------------------------------------
# refused at load time instead of failing each run


def test_a_cuda_device_that_does_not_exist_is_refused_before_any_folder(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = write_yaml(tmp_path / "c.yaml", _raw(tmp_path))
    for device in ("cuda", "cuda:99"):
        for dry in (["--dry-run"], []):
            _refused(capsys, ["run", str(cfg), "--set", f"device={device}", *dry], "device:", "no GPU is visible",
                     written=tmp_path / "results")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    _refused(capsys, ["run", str(cfg), "--set", "device=cuda:99", "--dry-run"], "device:",
             "asks for GPU 99, but this machine has 2", written=tmp_path / "results")


def test_a_slurm_cuda_device_needs_gpus_per_task(tmp_path, capsys, monkeypatch):
    from albench.runner import slurm

    monkeypatch.setattr(slurm, "check_slurm", lambda *a, **k: None)
    cfg = write_yaml(tmp_path / "c.yaml", _raw(tmp_path, executor={"name": "slurm"}))
    _refused(capsys, ["run", str(cfg), "--set", "device=cuda", "--dry-run"], "device:",
             "each Slurm task gets 0 GPU(s)", written=tmp_path / "results")
    assert main(["run", str(cfg), "--set", "device=cuda", "--set", "executor.slurm.gpus_per_task=1", "--dry-run"]) == 0


def test_slurm_without_slurm_is_refused_by_dry_run_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    cfg = write_yaml(tmp_path / "c.yaml", _raw(tmp_path))
    _refused(capsys, ["run", str(cfg), "--executor", "slurm", "--dry-run"], "executor.name:",
             "Slurm is not installed here", written=tmp_path / "results")


def _garbage_cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"\x80\x04garbage, not a pickle" * 20)


def _evil_cifar(root: Path) -> None:
    import pickle

    class Boom:  # a pickle that would run code when loaded
        def __reduce__(self):
            return (os.system, ("touch " + str(root / "pwned"),))

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": Boom(), "labels": [0]}))


def _npz_member(zf: zipfile.ZipFile, name: str, shape: tuple, dtype: str, data: bytes) -> None:
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(data)
    zf.writestr(f"{name}.npy", buf.getvalue())


def _huge_npz(root: Path) -> None:
    with zipfile.ZipFile(root / "data.npz", "w") as zf:
        _npz_member(zf, "x_train", (10 ** 12, 32, 32, 3), "|u1", b"\0" * 64)
        _npz_member(zf, "y_train", (10 ** 12,), "<i8", b"\0" * 64)
        _npz_member(zf, "x_test", (2, 32, 32, 3), "|u1", b"\0" * 6144)
        _npz_member(zf, "y_test", (2,), "<i8", b"\0" * 16)


def _npz_label_2_40(root: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 2 ** 40], dtype=np.int64)
    np.savez(root / "data.npz", x_train=rng.integers(0, 255, (4, 8, 8), dtype=np.uint8), y_train=y,
             x_test=rng.integers(0, 255, (2, 8, 8), dtype=np.uint8), y_test=np.array([0, 1]))


def _mnist_8_bytes(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / stem).write_bytes(b"\x00\x00\x08\x03" + struct.pack(">i", 60000))


def _svhn_garbage(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (root / name).write_bytes(b"MATLAB 5.0 MAT-file, but not really" + b"\x00\xff" * 100)


def _svhn_wrong_images(root: Path) -> None:
    import scipy.io as sio

    for name in ("train_32x32.mat", "test_32x32.mat"):  # labels fine, X of another shape (not read at load)
        sio.savemat(root / name, {"X": np.zeros((8, 8, 3, 60), np.uint8), "y": np.ones((60, 1), np.uint8)})


def _imagefolder(root: Path) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(root / "train" / c / f"{i}.png")


DATA = {
    "garbage-cifar10-batches": ("cifar10", _garbage_cifar, {}, ["data_batch_1 is not a readable pickle"]),
    "cifar10-pickle-running-code": ("cifar10", _evil_cifar, {}, ["refers to posix.system"]),
    "npz-declaring-1e12-images": ("npz", _huge_npz, {"file": "data.npz"}, ["array 'x_train' is truncated or damaged"]),
    "npz-label-2-40": ("npz", _npz_label_2_40, {"file": "data.npz"}, ["holds label 1099511627776", "at most 100000"]),
    "mnist-8-byte-idx": ("mnist", _mnist_8_bytes, {}, ["is truncated: 8 bytes"]),
    "svhn-garbage-mat": ("svhn", _svhn_garbage, {}, ["train_32x32.mat is not a readable .mat file"]),
    "svhn-wrong-images": ("svhn", _svhn_wrong_images, {}, ["declares X as uint8 (8, 8, 3, 60); SVHN's is uint8 (32, 32, 3, 60)"]),
    "imagefolder-image-size-1e6": ("imagefolder", _imagefolder, {"image_size": [10 ** 6, 10 ** 6]},
                                   ["image_size: must be [height, width] in pixels, each 1..8192"]),
}


@pytest.mark.parametrize("case", list(DATA))
def test_bad_data_files_are_refused_at_load(tmp_path, capsys, case):
    name, write, params, needles = DATA[case]
    root = tmp_path / "data"
    root.mkdir()
    write(root)
    cfg = write_yaml(tmp_path / "c.yaml", _raw(tmp_path, dataset={"name": name, "root": str(root), "params": params},
                                             model={"name": "small-cnn", "params": {"width": 8}}))
    for dry in (["--dry-run"], []):
        # the config says `dataset:`, so the error names `dataset.` (issue 27: the key the user wrote)
        _refused(capsys, ["run", str(cfg), *dry], "dataset.", *needles, written=tmp_path / "results")
    assert not (root / "pwned").exists()


@pytest.mark.parametrize("uri,needle", [
    ("mlr\0uns", "holds a NUL byte"),
    ("mlr\nuns", "holds a control character"),
    ("ftp://nowhere/mlruns", "uses the scheme 'ftp:'"),
    ("/etc/passwd/mlruns", "cannot be created: /etc/passwd is not a folder"),
    ("/proc", "points into /proc, a pseudo file system"),
    ("file:///sys/kernel/mlruns", "points into /sys"),
    ("http://:5000", "names no host"),
    ("http://host:99999", "port that is not a number"),
    ("sqlite:////etc/passwd/db.sqlite", "cannot be created"),
])
def test_bad_mlflow_uris_are_refused_at_load(tmp_path, capsys, uri, needle):
    with pytest.raises(ConfigError, match="tracking.mlflow") as err:
        build_config(_raw(tmp_path, tracking={"mlflow": uri}))
    assert needle in str(err.value)


def test_an_unreachable_mlflow_server_is_refused_before_any_folder(tmp_path, capsys):
    pytest.importorskip("mlflow")
    cfg = write_yaml(tmp_path / "c.yaml", _raw(tmp_path, tracking={"mlflow": "http://127.0.0.1:9"}))
    _refused(capsys, ["run", str(cfg)], "tracking.mlflow:", "cannot be reached: 127.0.0.1:9",
             written=tmp_path / "results")


def test_mlflow_retries_are_bounded_and_stated(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from albench.tracking import MLFLOW_MAX_WAIT_S
    from albench.tracking.mlflow_tracker import MLflowTracker, TrackingError

    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        monkeypatch.delenv(key, raising=False)
    tracker = MLflowTracker("http://127.0.0.1:9", run_dir=tmp_path, sweep="s", run_id="r")
    with pytest.raises(TrackingError, match=r"each request gets 3 tries of at most 10 s"):
        tracker.open(config={}, identity={}, rows=[], resumed=False)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2" and MLFLOW_MAX_WAIT_S < 60
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the user's setting wins, and is stated
    with pytest.raises(TrackingError, match=r"each request gets 1 tries"):
        MLflowTracker("http://127.0.0.1:9", run_dir=tmp_path, sweep="s", run_id="r").open(
            config={}, identity={}, rows=[], resumed=False)


def test_lone_surrogates_are_refused_before_a_folder_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'output: {tmp_path / "results"}\ndataset: digits\nname: "\\uDC80"\n')
    _refused(capsys, ["run", str(cfg), "--dry-run"], "name:", "lone surrogate", written=tmp_path / "results")
    cfg.write_text(f'output: {tmp_path / "results"}\ndataset: digits\nstrategies: [{{name: random, label: "\\uDC80"}}]\n')
    _refused(capsys, ["run", str(cfg)], "strategies[0].label:", "lone surrogate", written=tmp_path / "results")
