"""Segmentation datasets: a synthetic one that needs no download, and Cityscapes.

Both yield uint8 images (N, 3, H, W) and uint8 class maps (N, H, W) with 255 marking pixels that
carry no label (``ignore_index``). Neither augments by default (the paper trains its segmentation
model without augmentation); a config may still set ``train.augment.crop_padding`` / ``hflip``, and
the maps are then shifted and flipped with their images (shifted-in pixels are ignored).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from albench.data.base import DatasetSpec, ImageDataset, channel_stats, param_image_size, param_int
from albench.data.decoded import (IMAGENET_MEAN, IMAGENET_STD, cache_key, check_cache_dir, decoded_array,
                                default_workers, read_label, read_rgb, resolve_cache_dir)
from albench.data.registry import register_dataset
from albench.errors import ConfigError
from albench.typed import INT64_MAX, MAX_COUNT

IGNORE = 255


def _positive_int(spec: DatasetSpec, cfg, path: str, key: str, minimum: int = 1) -> int:
    maximum = INT64_MAX if key.endswith("seed") else MAX_COUNT  # a seed is a name, not a count
    return param_int(spec, cfg, path, key, minimum, maximum)


_size_param = param_image_size


# ------------------------------------------------------------------------------------------------
# synthetic: digit scenes


def _glyphs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (0..16 intensities) split once into glyphs for train and for test
    scenes, so test scenes show handwriting the model never saw."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    tr, te = train_test_split(np.arange(len(bunch.target)), test_size=297, random_state=0, stratify=bunch.target)
    return bunch.images[tr], bunch.target[tr], bunch.images[te], bunch.target[te]


def render_scenes(glyphs: np.ndarray, labels: np.ndarray, count: int, *, size: tuple[int, int], per_image: int,
                  scale: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` RGB scenes (N, 3, H, W) uint8 and their class maps (N, H, W) uint8.

    Each scene is a random colour with pixel noise and a horizontal brightness ramp; ``per_image``
    glyphs, upscaled ``scale`` times (nearest), are alpha-blended in random colours at random
    places (later ones over earlier ones). A pixel of glyph intensity >= 1/2 is that digit's class
    (1 + digit); a faint stroke edge (0 < intensity < 1/2) is ignored (255) unless a later glyph's
    stroke covers it; everything else is background (0).
    """
    h, w = size
    gh, gw = 8 * scale, 8 * scale
    if gh > h or gw > w:
        raise ValueError(f"glyphs of {gh}x{gw} pixels do not fit {h}x{w} scenes; lower scale")
    images = np.empty((count, h, w, 3), dtype=np.uint8)
    maps = np.zeros((count, h, w), dtype=np.uint8)
    ramp = np.linspace(-20.0, 20.0, w)[None, :, None]
    for i in range(count):
        bg = rng.uniform(30, 225, size=3)
        img = bg + ramp * rng.choice([-1.0, 1.0]) + rng.normal(0.0, 6.0, size=(h, w, 3))
        for _ in range(per_image):
            g = int(rng.integers(len(glyphs)))
            alpha = np.kron(glyphs[g] / 16.0, np.ones((scale, scale)))
            colour = rng.uniform(0, 255, size=3)
            if np.abs(colour - bg).sum() < 150:  # keep strokes visible against the background
                colour = 255.0 - colour
            y0, x0 = int(rng.integers(h - gh + 1)), int(rng.integers(w - gw + 1))
            patch = img[y0:y0 + gh, x0:x0 + gw]
            img[y0:y0 + gh, x0:x0 + gw] = patch * (1 - alpha[..., None]) + colour * alpha[..., None]
            m = maps[i, y0:y0 + gh, x0:x0 + gw]
            m[alpha >= 0.5] = 1 + int(labels[g])
            m[(alpha > 0) & (alpha < 0.5)] = IGNORE
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images.transpose(0, 3, 1, 2).copy(), maps


@register_dataset
class DigitScenes(DatasetSpec):
    name = "digit-scenes"
    description = ("SYNTHETIC segmentation, no download: scikit-learn digits pasted in colour on noisy "
                   "backgrounds; 11 classes (background, 0-9), 255 = faint stroke edges")
    task = "segmentation"
    needs_root = False
    params = {"train_size": 400, "test_size": 100, "image_size": [32, 32], "digits_per_image": 2, "scale": 2,
              "seed": 0}

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        for key in ("train_size", "test_size", "digits_per_image", "scale"):
            _positive_int(self, cfg, path, key)
        _positive_int(self, cfg, path, "seed", minimum=0)
        h, w = _size_param(self, cfg, path)
        side = 8 * self.param(cfg, "scale")
        if side > min(h, w):
            raise ConfigError(f"{path}.params.scale", f"makes {side}-pixel glyphs, larger than the {h}x{w} scenes",
                              "lower scale or raise image_size", self.param(cfg, "scale"))

    def train_size(self, cfg) -> int:
        return int(self.param(cfg, "train_size"))

    def load(self, cfg) -> ImageDataset:
        size = tuple(self.param(cfg, "image_size"))
        per, scale = int(self.param(cfg, "digits_per_image")), int(self.param(cfg, "scale"))
        g_tr, l_tr, g_te, l_te = _glyphs()
        # one seeded stream per split: the test scenes do not change with train_size
        seed = int(self.param(cfg, "seed"))
        x_tr, y_tr = render_scenes(g_tr, l_tr, int(self.param(cfg, "train_size")), size=size, per_image=per,
                                   scale=scale, rng=np.random.default_rng([seed, 0]))
        x_te, y_te = render_scenes(g_te, l_te, int(self.param(cfg, "test_size")), size=size, per_image=per,
                                   scale=scale, rng=np.random.default_rng([seed, 1]))
        x_train = torch.from_numpy(x_tr)
        mean, std = channel_stats(x_train)
        classes = ["background"] + [str(d) for d in range(10)]
        return ImageDataset(name=self.name, x_train=x_train, y_train=torch.from_numpy(y_tr),
                            x_test=torch.from_numpy(x_te), y_test=torch.from_numpy(y_te), classes=classes,
                            mean=mean, std=std, task="segmentation", crop_padding=0, hflip=False,
                            ignore_index=IGNORE, info={"synthetic": True, "classes": classes})


# ------------------------------------------------------------------------------------------------
# Cityscapes

# (label id, train id, name) of the 19 evaluated classes (cityscapesScripts' labels.py); every
# other label id (void, rare classes, the license plate) maps to 255.
TRAIN_CLASSES = [
    (7, "road"), (8, "sidewalk"), (11, "building"), (12, "wall"), (13, "fence"), (17, "pole"),
    (19, "traffic light"), (20, "traffic sign"), (21, "vegetation"), (22, "terrain"), (23, "sky"),
    (24, "person"), (25, "rider"), (26, "car"), (27, "truck"), (28, "bus"), (31, "train"),
    (32, "motorcycle"), (33, "bicycle"),
]


def label_lut() -> np.ndarray:
    """(256,) uint8: Cityscapes label id -> train id 0..18, everything else 255."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for train_id, (label_id, _) in enumerate(TRAIN_CLASSES):
        lut[label_id] = train_id
    return lut


def cityscapes_folder(root: str | Path) -> Path | None:
    """The folder holding leftImg8bit/ and gtFine/ (``root`` or ``root/cityscapes``), or None."""
    for cand in (Path(root), Path(root) / "cityscapes"):
        if (cand / "leftImg8bit").is_dir() and (cand / "gtFine").is_dir():
            return cand
    return None


def cityscapes_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, labelIds) file pairs of a split, sorted by city and file name."""
    pairs = []
    for img in sorted((folder / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        pairs.append((img, folder / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"))
    return pairs


@register_dataset
class Cityscapes(DatasetSpec):
    name = "cityscapes"
    description = ("Cityscapes fine annotations (torchvision layout): 2,975 train / 500 val as test, 19 classes, "
                   "resized to 1024x512")
    task = "segmentation"
    params = {"image_size": [512, 1024], "cache_dir": ".albench-cache", "workers": None}

    def check(self, cfg, path: str) -> None:
        super().check(cfg, path)
        root = cfg.resolved_root()
        folder = cityscapes_folder(root)
        if folder is None:
            raise ConfigError(f"{path}.root", "holds no leftImg8bit/ and gtFine/ folders (nor cityscapes/ with them)",
                              f"point {path}.root at the folder with leftImg8bit/ and gtFine/ (torchvision's "
                              "Cityscapes layout)", root)
        for split in ("train", "val"):
            pairs = cityscapes_pairs(folder, split)
            if not pairs:
                raise ConfigError(f"{path}.root", f"has no leftImg8bit/{split}/<city>/*_leftImg8bit.png images",
                                  "unpack leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip there", root)
            missing = [lab for _, lab in pairs if not lab.is_file()]
            if missing:
                raise ConfigError(f"{path}.root", f"lacks {len(missing)} gtFine label maps, e.g. {missing[0]}",
                                  "unpack gtFine_trainvaltest.zip next to leftImg8bit", root)
        _size_param(self, cfg, path)
        if self.param(cfg, "workers") is not None:
            _positive_int(self, cfg, path, "workers")
        check_cache_dir(resolve_cache_dir(root, self.param(cfg, "cache_dir")), f"{path}.params.cache_dir")

    def train_size(self, cfg) -> int:
        return len(cityscapes_pairs(cityscapes_folder(cfg.resolved_root()), "train"))

    def load(self, cfg) -> ImageDataset:
        root = cfg.resolved_root()
        folder = cityscapes_folder(root)
        size = tuple(self.param(cfg, "image_size"))
        cache = resolve_cache_dir(root, self.param(cfg, "cache_dir"))
        workers = default_workers(self.param(cfg, "workers"))
        lut = label_lut()
        arrays = {}
        for split, name in (("train", "train"), ("val", "test")):
            pairs = cityscapes_pairs(folder, split)
            rel = [str(p.relative_to(folder)) for p, _ in pairs]
            key = cache_key(dataset="cityscapes", split=split, files=rel, size=list(size))
            arrays[f"x_{name}"] = decoded_array([str(p) for p, _ in pairs], partial(read_rgb, size=size), (3, *size),
                                                cache_dir=cache, name=f"cityscapes-{split}-images", key=key,
                                                workers=workers)
            arrays[f"y_{name}"] = decoded_array([str(lab) for _, lab in pairs], partial(read_label, size=size, lut=lut),
                                                size, cache_dir=cache, name=f"cityscapes-{split}-labels", key=key,
                                                workers=workers)
        classes = [n for _, n in TRAIN_CLASSES]
        return ImageDataset(name=self.name, **arrays, classes=classes, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            task="segmentation", crop_padding=0, hflip=False, ignore_index=IGNORE,
                            info={"classes": classes, "image_size": list(size)})
