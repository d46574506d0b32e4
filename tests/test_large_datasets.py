"""Cityscapes, Caltech-101 and ImageNet-67 loaders on tiny fixture folders in their real layouts,
written by the tests; the decoded-image cache; a memory-mapped pool through the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import albench.data.decoded as decoded
from albench.config import DatasetConfig, build_config
from albench.data.decoded import IMAGENET_MEAN
from albench.data.large import Caltech101, ImageNet67, paper_test_size, read_mapping
from albench.data.registry import get_dataset
from albench.data.segmentation import Cityscapes, label_lut
from albench.errors import ConfigError


def _solid(path, size_wh, colour, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size_wh, colour).save(path)


def _cfg(name, root, **params) -> DatasetConfig:
    return DatasetConfig(name=name, root=str(root), params=params)


# ------------------------------------------------------------------------------------------------
# Cityscapes


CITY_TRAIN = {"aachen": ["aachen_000000_000019", "aachen_000001_000019"], "bochum": ["bochum_000000_000313"]}
CITY_VAL = {"frankfurt": ["frankfurt_000000_000294", "frankfurt_000000_000576"]}


def _label_blocks(seed: int) -> np.ndarray:
    """An 8 x 16 labelIds image of 2 x 2 blocks (so a nearest resize to 4 x 8 keeps every block)."""
    ids = np.array([0, 7, 8, 26, 33, 4, 255, 24])  # void, road, sidewalk, car, bicycle, static, 255, person
    blocks = np.random.default_rng(seed).choice(ids, size=(4, 8))
    return np.kron(blocks, np.ones((2, 2), dtype=np.int64)).astype(np.uint8)


def write_cityscapes(root):
    """torchvision's layout: leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png (plus the colour/instance files, unused)."""
    k = 0
    for split, cities in (("train", CITY_TRAIN), ("val", CITY_VAL)):
        for city, stems in cities.items():
            for stem in stems:
                _solid(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", (16, 8),
                       (10 * k, 100, 200 - 10 * k))
                lab = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
                lab.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_label_blocks(k)).save(lab)
                _solid(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", (16, 8), (0, 0, 0))
                k += 1
    return root


def test_cityscapes_lut_maps_the_34_label_ids_to_19_train_ids():
    lut = label_lut()
    assert lut[7] == 0 and lut[8] == 1 and lut[11] == 2 and lut[26] == 13 and lut[31] == 16 and lut[33] == 18
    assert (lut[[0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 255]] == 255).all()
    assert sorted(set(lut.tolist()) - {255}) == list(range(19))


def test_cityscapes_loader_reads_the_torchvision_layout(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    spec = get_dataset("cityscapes")
    cfg = _cfg("cityscapes", root, image_size=[4, 8], cache_dir=None, workers=1)
    spec.check(cfg, "dataset")
    assert spec.train_size(cfg) == 3
    ds = spec.load(cfg)
    assert ds.task == "segmentation" and ds.num_classes == 19 and ds.ignore_index == 255
    assert ds.x_train.shape == (3, 3, 4, 8) and ds.y_train.shape == (3, 4, 8) and ds.y_train.dtype == torch.uint8
    assert ds.x_test.shape == (2, 3, 4, 8)  # the val split is the test set
    # sorted by city then file: aachen 0, aachen 1, bochum 0; label ids mapped, void -> 255
    lut = label_lut()
    for i in range(3):
        want = lut[_label_blocks(i)[::2, ::2]]
        assert ds.y_train[i].numpy().tolist() == want.tolist()
    assert ds.x_train[2, :, 0, 0].tolist() == [20, 100, 180]  # the third train image's colour
    assert ds.y_test[1].numpy().tolist() == lut[_label_blocks(4)[::2, ::2]].tolist()
    assert ds.mean == IMAGENET_MEAN and ds.crop_padding == 0 and ds.hflip is False
    assert ds.classes[0] == "road" and ds.classes[-1] == "bicycle"


def test_cityscapes_cache_is_memory_mapped_and_reused(tmp_path, monkeypatch):
    root = write_cityscapes(tmp_path / "cityscapes")
    cfg = _cfg("cityscapes", tmp_path, image_size=[4, 8], workers=2)  # root one level up; default cache
    Cityscapes().check(cfg, "dataset")
    first = Cityscapes().load(cfg)  # decoded by 2 worker processes into <root>/.albench-cache
    files = sorted(p.name for p in (tmp_path / ".albench-cache").glob("*.npy"))
    assert len(files) == 4 and all(f.startswith("cityscapes-") for f in files)
    serial = Cityscapes().load(_cfg("cityscapes", root, image_size=[4, 8], cache_dir=None, workers=1))
    assert torch.equal(first.x_train, serial.x_train) and torch.equal(first.y_test, serial.y_test)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decoded, "decode_into", no_decoding)
    again = Cityscapes().load(cfg)
    assert torch.equal(again.x_train, first.x_train) and torch.equal(again.y_train, first.y_train)
    again.x_train[0] = 0  # copy-on-write: the run may write, the cache file never changes
    assert torch.equal(Cityscapes().load(cfg).x_train, first.x_train)


def test_cityscapes_config_is_the_papers_setup_and_needs_weights_for_batch_size_one(tmp_path):
    from pathlib import Path

    from albench.validate import load_config

    root = write_cityscapes(tmp_path / "cs")
    path = Path(__file__).resolve().parent.parent / "bench" / "configs" / "cityscapes.yaml"
    small = [f"dataset.root={root}", "al.initial=1", "al.budget=1", "al.cycles=2"]  # the fixture has 3 images
    with pytest.raises(ConfigError) as err:  # no pretrained weights: BatchNorm would see single images
        load_config(path, small)
    assert err.value.field == "model.params.freeze_bn" and "weights" in err.value.fix
    weights = tmp_path / "resnet101.pth"
    weights.write_bytes(b"checked when the model is built")
    cfg = load_config(path, small + [f"model.params.weights={weights}"])
    assert cfg.model.name == "deeplabv3-resnet101" and cfg.train.batch_size == 1
    assert (cfg.train.augment.crop_padding, cfg.train.augment.hflip) == (0, False)
    assert cfg.datasets[0].params["image_size"] == [512, 1024]
    raw = load_config(path, [f"dataset.root={root}", f"model.params.weights={weights}"], check_data=False)
    assert (raw.al.initial, raw.al.budget, raw.al.cycles) == (100, 100, 10)
    assert [s.name for s in raw.strategies] == ["random", "least-confidence", "coreset", "pt4al"]


def test_cityscapes_check_names_what_is_missing(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    (root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000576_gtFine_labelIds.png").unlink()
    with pytest.raises(ConfigError, match="lacks 1 gtFine label maps") as err:
        Cityscapes().check(_cfg("cityscapes", root), "datasets[0]")
    assert err.value.field == "datasets[0].root"
    with pytest.raises(ConfigError, match="leftImg8bit"):
        Cityscapes().check(_cfg("cityscapes", tmp_path), "datasets[0]")


# ------------------------------------------------------------------------------------------------
# Caltech-101

CALTECH = {"BACKGROUND_Google": 10, "Faces": 10, "accordion": 10, "airplanes": 10}


def write_caltech(folder):
    """Class folders of image_NNNN.jpg of varied sizes (some grayscale, as in Caltech-101)."""
    k = 0
    for cls, n in CALTECH.items():
        for i in range(n):
            mode = "L" if i % 4 == 3 else "RGB"
            colour = 100 if mode == "L" else (k % 256, 50, 200)
            _solid(folder / cls / f"image_{i + 1:04d}.jpg", (30 + i, 20 + k % 7), colour, mode)
            k += 1
    return folder


def test_paper_split_sizes():
    assert paper_test_size(9144) == 1098 and 9144 - paper_test_size(9144) == 8046
    assert paper_test_size(8677) == 1042  # background dropped: the same share


def test_caltech_torchvision_layout_with_background_as_a_class(tmp_path):
    write_caltech(tmp_path / "caltech101" / "101_ObjectCategories")
    spec = get_dataset("caltech101")
    cfg = _cfg("caltech101", tmp_path, image_size=[16, 16], workers=1)
    spec.check(cfg, "dataset")
    ds = spec.load(cfg)
    assert ds.classes == ["BACKGROUND_Google", "Faces", "accordion", "airplanes"]
    assert ds.x_train.shape == (35, 3, 16, 16) and ds.x_test.shape == (5, 3, 16, 16)  # round(40 * 1098/9144) = 5
    assert spec.train_size(cfg) == 35 and ds.info["background"] is True
    assert torch.bincount(ds.y_test, minlength=4).tolist() in ([2, 1, 1, 1], [1, 2, 1, 1], [1, 1, 2, 1],
                                                               [1, 1, 1, 2])  # stratified
    gray = ds.x_train[(ds.x_train[:, 0] == ds.x_train[:, 1]).flatten(1).all(1)]
    assert len(gray) > 0 and (gray.float() - 100).abs().max() <= 2  # grayscale files become RGB
    again = spec.load(cfg)
    assert torch.equal(again.y_train, ds.y_train) and torch.equal(again.x_test, ds.x_test)  # seeded
    other = spec.load(_cfg("caltech101", tmp_path, image_size=[16, 16], workers=1, split_seed=1))
    assert not torch.equal(other.x_test, ds.x_test)
    assert ds.crop_padding == 28 and ds.hflip is True and ds.mean == IMAGENET_MEAN


def test_caltech_without_background_and_as_an_imagefolder(tmp_path):
    write_caltech(tmp_path / "folder")
    cfg = _cfg("caltech101", tmp_path / "folder", image_size=[8, 8], background=False, workers=1)
    Caltech101().check(cfg, "dataset")
    ds = Caltech101().load(cfg)
    assert ds.classes == ["Faces", "accordion", "airplanes"]
    assert len(ds.y_train) + len(ds.y_test) == 30 and len(ds.y_test) == 4  # round(30 * 1098/9144)
    fixed = Caltech101().load(_cfg("caltech101", tmp_path / "folder", image_size=[8, 8], test_size=6, workers=1))
    assert len(fixed.y_test) == 6 and len(fixed.classes) == 4
    with pytest.raises(ConfigError, match="stratified") as err:
        Caltech101().check(_cfg("caltech101", tmp_path / "folder", test_size=2), "dataset")
    assert err.value.field == "dataset.params.test_size"


# ------------------------------------------------------------------------------------------------
# ImageNet-67

WNIDS = {"n01440764": 4, "n01443537": 3, "n01530575": 3, "n09999999": 2}  # train images per wnid
MAPPING = "wnid,superclass\n# fish and birds\nn01440764,fish\nn01443537,fish\nn01530575,bird\nn02000000,dog\n"


def write_imagenet(root):
    """root/train/<wnid>/<wnid>_<n>.JPEG and root/val/<wnid>/ILSVRC2012_val_<n>.JPEG."""
    k = 0
    for wnid, n in WNIDS.items():
        for i in range(n):
            _solid(root / "train" / wnid / f"{wnid}_{i}.JPEG", (40, 30), (k * 10, 0, 0))
            k += 1
        _solid(root / "val" / wnid / f"ILSVRC2012_val_{k:08d}.JPEG", (50, 40), (0, k * 10, 0))
    (root / "map.csv").write_text(MAPPING)
    return root


def test_mapping_files_csv_and_json(tmp_path):
    csv_map = read_mapping(write_imagenet(tmp_path) / "map.csv")
    assert csv_map == {"n01440764": "fish", "n01443537": "fish", "n01530575": "bird", "n02000000": "dog"}
    (tmp_path / "map.json").write_text(json.dumps(csv_map))
    assert read_mapping(tmp_path / "map.json") == csv_map
    (tmp_path / "bad.csv").write_text("n01440764,fish\nn01443537\n")
    with pytest.raises(ConfigError, match="line 2 has 1 fields"):
        read_mapping(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("n01440764,fish\nn01440764,bird\n")
    with pytest.raises(ConfigError, match="mapped to 'fish' before"):
        read_mapping(tmp_path / "twice.csv")


def test_imagenet67_groups_wnids_into_superclasses_and_caches_on_disk(tmp_path, monkeypatch):
    root = write_imagenet(tmp_path / "imagenet")
    spec = get_dataset("imagenet67")
    cfg = _cfg("imagenet67", root, mapping="map.csv", image_size=[8, 8], workers=1)
    spec.check(cfg, "dataset")
    assert spec.train_size(cfg) == 10  # n09999999 is not mapped: dropped
    ds = spec.load(cfg)
    assert ds.classes == ["bird", "fish"]
    assert ds.y_train.tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]  # sorted wnid folders, then files
    assert ds.y_test.tolist() == [1, 1, 0]
    assert ds.x_train.shape == (10, 3, 8, 8) and abs(ds.x_train[9, 0, 0, 0].item() - 90) <= 2  # JPEG
    assert ds.info["wnids_dropped"] == 1 and ds.info["wnids_missing"] == ["n02000000"]
    cache = sorted(p.name for p in (root / ".albench-cache").glob("*.npy"))
    assert [c.split("-")[1] for c in cache] == ["train", "val"]
    assert (root / ".albench-cache" / cache[0]).stat().st_size >= 10 * 3 * 8 * 8

    monkeypatch.setattr(decoded, "decode_into", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(spec.load(cfg).x_train, ds.x_train)


def test_imagenet67_check_refuses_bad_input(tmp_path):
    root = write_imagenet(tmp_path / "imagenet")
    with pytest.raises(ConfigError) as err:
        ImageNet67().check(_cfg("imagenet67", root), "datasets[0]")
    assert err.value.field == "datasets[0].params.mapping"
    (root / "none.csv").write_text("n11111111,cat\n")
    with pytest.raises(ConfigError, match="maps none of the train"):
        ImageNet67().check(_cfg("imagenet67", root, mapping="none.csv"), "datasets[0]")
    flat = tmp_path / "flat"
    write_imagenet(flat)
    for f in (flat / "val").rglob("*.JPEG"):
        f.rename(flat / "val" / f.name)
    for d in (flat / "val").iterdir():
        if d.is_dir():
            d.rmdir()
    with pytest.raises(ConfigError, match="val/<wnid>/"):
        ImageNet67().check(_cfg("imagenet67", flat, mapping="map.csv"), "datasets[0]")


def test_a_memory_mapped_pool_runs_through_the_engine_without_a_copy(tmp_path):
    from albench.engine.loop import RunContext, execute_run
    from albench.plan import make_plan
    from albench.records import read_cycles

    root = write_imagenet(tmp_path / "imagenet")
    raw = {"name": "mm", "dataset": {"name": "imagenet67", "root": str(root),
                                     "params": {"mapping": "map.csv", "image_size": [8, 8], "workers": 1}},
           "model": {"name": "small-cnn", "params": {"width": 4}},
           "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8}, "al": {"initial": 4, "budget": 2,
                                                                               "cycles": 2},
           "strategies": ["least-confidence"], "seeds": [0], "threads": 1, "output": str(tmp_path / "out"),
           "record": {"embeddings": 4}}
    (rc,) = make_plan(build_config(raw))
    ctx = RunContext(rc, None)
    assert ctx.pool_images is ctx.ds.x_train  # the engine indexes the memory map; it never copies the pool
    assert execute_run(rc).state == "complete"
    assert [r["n_labeled"] for r in read_cycles(rc.run_dir)] == [4, 6]
