"""Segmentation end to end: the synthetic dataset, an AL sweep on the CPU recording mIoU per cycle,
strategies that apply (random, least-confidence, coreset, PT4AL with colorization) and those refused,
joint image + mask augmentation, and training with batch size 1."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import albench.strategies.pt4al as pt
from albench.config import DatasetConfig, build_config
from albench.data.augment import BatchTransform
from albench.data.registry import get_dataset
from albench.engine.loop import execute_run
from albench.errors import ConfigError
from albench.plan import make_plan
from albench.records import read_artifact, read_cycles
from albench.validate import load_config
from albench.strategies.base import Inputs, Need, Outputs, PoolState, PrepareContext
from albench.strategies.pretext import PretextResult
from albench.strategies.registry import make_strategy

SEG = {  # a few seconds per run on one CPU thread
    "name": "seg",
    "dataset": {"name": "digit-scenes", "params": {"train_size": 48, "test_size": 16, "image_size": [24, 24]}},
    "model": {"name": "small-seg", "params": {"width": 8}},
    "train": {"epochs": 2, "batch_size": 8, "eval_batch_size": 16,
              "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}, "schedule": {"name": "constant"}},
    "al": {"initial": 8, "budget": 8, "cycles": 3},
    "strategies": ["random"],
    "seeds": [0],
    "threads": 1,
    "record": {"embeddings": 16},
}
PT4AL_COLOR = {"name": "pt4al", "params": {"pretext_task": "colorization", "pretext_model": "small-seg",
                                           "pretext_model_params": {"width": 4}, "pretext_epochs": 1,
                                           "pretext_batch_size": 16}}


def _raw(tmp_path, **changes) -> dict:
    raw = copy.deepcopy(SEG)
    raw["output"] = str(tmp_path / "results")
    raw.update(changes)
    return raw


# ------------------------------------------------------------------------------------------------
# the synthetic dataset


def test_digit_scenes_are_seeded_rgb_scenes_with_masks():
    spec = get_dataset("digit-scenes")
    cfg = DatasetConfig(name="digit-scenes", params={"train_size": 20, "test_size": 6, "image_size": [24, 32]})
    spec.check(cfg, "dataset")  # needs no root: nothing to download
    ds = spec.load(cfg)
    assert ds.task == "segmentation" and ds.ignore_index == 255 and ds.num_classes == 11
    assert ds.x_train.shape == (20, 3, 24, 32) and ds.y_train.shape == (20, 24, 32)
    assert ds.y_train.dtype == torch.uint8 and ds.x_test.shape == (6, 3, 24, 32)
    values = set(torch.unique(ds.y_train).tolist())
    assert values <= set(range(11)) | {255} and 0 in values and 255 in values and len(values) > 3
    # no augmentation by default (the paper trains segmentation without it)
    assert ds.crop_padding == 0 and ds.hflip is False and ds.info["synthetic"] is True
    again = spec.load(cfg)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)
    # the test scenes do not depend on the pool size
    more = spec.load(DatasetConfig(name="digit-scenes", params={**cfg.params, "train_size": 30}))
    assert torch.equal(more.x_test, ds.x_test) and torch.equal(more.x_train[:20], ds.x_train)


def test_digit_scene_masks_follow_the_glyph_strokes():
    from albench.data.segmentation import render_scenes

    glyph = np.zeros((1, 8, 8))
    glyph[0, 2:6, 3] = 16.0  # a full-intensity bar: class 1 + digit
    glyph[0, 2:6, 4] = 4.0  # a faint edge: ignored
    x, y = render_scenes(glyph, np.array([7]), 1, size=(8, 8), per_image=1, scale=1,
                         rng=np.random.default_rng(0))
    assert x.shape == (1, 3, 8, 8) and y.shape == (1, 8, 8)
    assert (y[0, 2:6, 3] == 8).all() and (y[0, 2:6, 4] == 255).all()
    assert (y[0][glyph[0] == 0] == 0).all()


# ------------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("name", ["entropy", "margin", "pt4al-sampling-only"])
def test_strategies_that_do_not_apply_are_refused_at_config_load(tmp_path, name):
    with pytest.raises(ConfigError) as err:
        build_config(_raw(tmp_path, strategies=["random", name]))
    assert err.value.field == "strategies[1].name"
    assert "does not apply to segmentation" in str(err.value) and name in str(err.value)


def test_models_must_match_the_task(tmp_path):
    with pytest.raises(ConfigError, match="does not do segmentation") as err:
        build_config(_raw(tmp_path, model={"name": "small-cnn"}))
    assert err.value.field == "model.name"
    digits = _raw(tmp_path, dataset={"name": "digits"})
    with pytest.raises(ConfigError, match="does not do classification"):
        build_config(digits)


def test_pt4al_options_without_a_segmentation_meaning_are_refused(tmp_path):
    entropy = copy.deepcopy(PT4AL_COLOR)
    entropy["params"]["sampler"] = "entropy"
    with pytest.raises(ConfigError) as err:
        load_config_raw(tmp_path, _raw(tmp_path, strategies=[entropy]))
    assert err.value.field == "strategies[0].params.sampler"
    # protocol official switches every quirk on, normalized_softmax included: refused, with the fix
    with pytest.raises(ConfigError) as err:
        load_config_raw(tmp_path, _raw(tmp_path, protocol="official", strategies=[PT4AL_COLOR]))
    assert err.value.field == "strategies[0].params.normalized_softmax" and "quirks" in err.value.fix
    ok = copy.deepcopy(PT4AL_COLOR)
    ok["quirks"] = ["string_sort", "warm_start", "best_on_test"]
    load_config_raw(tmp_path, _raw(tmp_path, protocol="official", strategies=[ok]))
    # a TypiClust first cycle: TypiClust and ProbCover select on classification pools only
    cold = copy.deepcopy(PT4AL_COLOR)
    cold["params"]["first_cycle_strategy"] = "typiclust"
    with pytest.raises(ConfigError) as err:
        load_config_raw(tmp_path, _raw(tmp_path, strategies=[cold]))
    assert err.value.field == "strategies[0].params.first_cycle_strategy"


def load_config_raw(tmp_path: Path, raw: dict):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


# ------------------------------------------------------------------------------------------------
# PT4AL on a segmentation pool


def test_pt4al_on_segmentation_asks_for_confidence_and_takes_the_least_confident(tmp_path, monkeypatch):
    monkeypatch.setattr(pt, "pretext_losses", lambda spec, **kw: PretextResult(
        np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], np.float32), np.zeros(1, np.float32), "miss", "k",
        0.0, 1, []))
    pool = PoolState(images=torch.zeros(8, 3, 4, 4, dtype=torch.uint8), labeled=np.zeros(0, dtype=np.int64),
                     labeled_targets=torch.zeros(0, 4, 4, dtype=torch.uint8), num_classes=3, task="segmentation")
    ctx = PrepareContext(pool=pool, test_images=torch.zeros(1, 3, 4, 4, dtype=torch.uint8), mean=(0.5,) * 3,
                         std=(0.25,) * 3, device=torch.device("cpu"), seed=0, cycles=2, initial=2, budget=2,
                         pool_fingerprint="fp", cache_dir=tmp_path, run_dir=tmp_path, log=lambda s: None)
    s = make_strategy("pt4al", {"pretext_task": "colorization"})
    assert s.needs_for("classification") == frozenset({Need.LOGITS})  # classification pools keep the logits path
    assert s.needs_for("segmentation") == frozenset({Need.CONFIDENCE})  # never (C, H, W) logits per image
    s.prepare(ctx)
    assert s.needs == frozenset({Need.LOGITS})  # prepare does not rewrite the class's declaration
    assert [b.tolist() for b in s.batches_] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    labeled = s.initial(size=2, pool=pool, rng=np.random.default_rng(0))
    assert labeled.tolist() == [0, 2]  # uniform over the first (highest-loss) batch
    pool.labeled = labeled
    cand = s.candidates(cycle=1, pool=pool, rng=np.random.default_rng(0))
    assert cand.tolist() == [4, 5, 6, 7]
    conf = torch.tensor([0.9, 0.4, 0.6, 0.5])  # mean pixel top-1 posteriors of 4, 5, 6, 7
    inputs = Inputs(candidates=Outputs(indices=cand, confidence=conf), labeled=None, device=torch.device("cpu"))
    assert s.select(cycle=1, budget=2, pool=pool, inputs=inputs, rng=np.random.default_rng(0)).tolist() == [5, 7]


# ------------------------------------------------------------------------------------------------
# augmentation and batch size 1


def test_joint_augmentation_moves_masks_with_their_images():
    t = BatchTransform((0.0,), (1.0,), crop_padding=2, hflip=True, normalize=False)
    x = torch.randint(1, 255, (16, 1, 6, 9), dtype=torch.uint8)
    y = x[:, 0].clone()  # a "mask" equal to the image: any mismatch after augmentation is a bug
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    img_only = t.train(x, g1)
    img, mask = t.train_pair(x, y, g2, fill=255)
    assert torch.equal(img_only, img)  # the same draws as image-only augmentation
    pixels = (img[:, 0] * 255).round().to(torch.uint8)
    shifted_in = mask == 255
    assert shifted_in.any() and (pixels[shifted_in] == 0).all()  # padding: image 0, mask ignored
    assert torch.equal(pixels[~shifted_in], mask[~shifted_in])
    # no augmentation: nothing moves
    plain = BatchTransform((0.0,), (1.0,), normalize=False)
    img, mask = plain.train_pair(x, y, torch.Generator().manual_seed(0), fill=255)
    assert torch.equal(mask, y)


def test_batch_size_one_trains_every_image():
    from albench.config import TrainConfig
    from albench.engine.train import Trainer
    from albench.tasks import SegmentationTask
    from albench.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("small-seg", num_classes=3, in_channels=3, image_size=(8, 8), params={"width": 4})
    cfg = TrainConfig(epochs=1, batch_size=1)
    transform = BatchTransform((0.5,) * 3, (0.25,) * 3)
    trainer = Trainer(model=model, aux=None, task=SegmentationTask(3), transform=transform, cfg=cfg,
                      device=torch.device("cpu"), amp=False, order_gen=torch.Generator().manual_seed(0),
                      aug_gen=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = []
    orig = trainer.opt.step
    trainer.opt.step = lambda *a, **k: (steps.append(1), orig(*a, **k))[1]
    trainer.fit(torch.randint(0, 255, (3, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (3, 8, 8)))
    assert len(steps) == 3  # one step per image: batches of one are not dropped when asked for
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------------
# the sweep


@pytest.mark.slow
def test_segmentation_sweep_records_miou_per_cycle(tmp_path):
    raw = _raw(tmp_path, strategies=["random", "least-confidence", "coreset", PT4AL_COLOR])
    runs = make_plan(build_config(raw))
    assert len(runs) == 4
    for rc in runs:
        outcome = execute_run(rc)
        assert outcome.state == "complete", outcome.error
        run_dir = rc.run_dir
        rows = read_cycles(run_dir)
        assert [r["cycle"] for r in rows] == [0, 1, 2] and [r["n_labeled"] for r in rows] == [8, 16, 24]
        assert all(r["metric"] == "miou" and 0.0 <= r["value"] <= 1.0 for r in rows)
        assert all(r["test_loss"] > 0 for r in rows)
        ident = json.loads((run_dir / "run.json").read_text())
        assert ident["metric"] == "miou" and ident["task"] == "segmentation"
        # per-class IoU of every cycle, consistent with the recorded mIoU
        class_iou = read_artifact(run_dir, "metric_class_iou")
        assert class_iou.shape == (3, 11)
        for row, ious in zip(rows, class_iou):
            assert row["value"] == pytest.approx(float(np.nanmean(ious)))
        assert read_artifact(run_dir, "metric_pixel_accuracy").shape == (3,)
        # what was queried: class pixel counts per image, not the maps
        assert read_artifact(run_dir, "labeled_targets") is None
        pixels = read_artifact(run_dir, "labeled_class_pixels")
        assert pixels.shape == (24, 11) and (pixels.sum(axis=1) <= 24 * 24).all() and pixels[:, 0].min() > 0
        assert read_artifact(run_dir, "test_loss").shape == (3, 16)
        queried = sum(json.loads((run_dir / "queries.json").read_text()).values(), [])
        assert len(set(queried)) == 24
    pt_dir = runs[-1].run_dir
    assert read_artifact(pt_dir, "pretext_loss_pool").shape == (48,)
    assert json.loads((pt_dir / "run.json").read_text())["prepare"]["pretext_task"] == "colorization"
    # same seed, same cold start for the model-free initial queries
    first = [json.loads((rc.run_dir / "queries.json").read_text())["0"] for rc in runs[:3]]
    assert first[0] == first[1] == first[2]


@pytest.mark.slow
def test_segmentation_run_is_deterministic_and_resumes_equal(tmp_path, monkeypatch):
    from albench.records import RunRecorder

    raw = _raw(tmp_path, strategies=["least-confidence"])
    (rc,) = make_plan(build_config(raw))
    assert execute_run(rc).state == "complete"
    want = (read_cycles(rc.run_dir), read_artifact(rc.run_dir, "metric_class_iou"))

    class Crash(BaseException):
        pass

    orig = RunRecorder.save_checkpoint
    calls = {"n": 0}

    def crash_after_second(self, state):
        orig(self, state)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash()

    raw2 = _raw(tmp_path / "b", strategies=["least-confidence"])
    (rc2,) = make_plan(build_config(raw2))
    monkeypatch.setattr(RunRecorder, "save_checkpoint", crash_after_second)
    with pytest.raises(Crash):
        execute_run(rc2)
    monkeypatch.setattr(RunRecorder, "save_checkpoint", orig)
    assert execute_run(rc2).state == "complete"
    got = (read_cycles(rc2.run_dir), read_artifact(rc2.run_dir, "metric_class_iou"))
    keys = ("cycle", "n_labeled", "value", "test_loss")
    assert [{k: r[k] for k in keys} for r in got[0]] == [{k: r[k] for k in keys} for r in want[0]]
    np.testing.assert_array_equal(got[1], want[1])
    assert not any(math.isnan(r["value"]) for r in got[0])


def test_engine_outputs_for_segmentation_are_one_row_per_image():
    """What least-confidence, PT4AL and Core-Set get on segmentation: (n,) mean pixel confidence and
    (n, D) pooled features, computed batch by batch (no (n, C, H, W) posteriors kept)."""
    from albench.engine.inference import compute_outputs
    from albench.tasks import SegmentationTask
    from albench.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("small-seg", num_classes=3, in_channels=3, image_size=(8, 8), params={"width": 4}).eval()
    images = torch.randint(0, 255, (7, 3, 8, 8), dtype=torch.uint8)
    transform = BatchTransform((0.5,) * 3, (0.25,) * 3)
    idx = np.array([6, 0, 3, 2])
    out = compute_outputs(model=model, aux=None, task=SegmentationTask(3), needs=frozenset({Need.CONFIDENCE,
                          Need.EMBEDDINGS}), images=images, indices=idx, transform=transform, batch_size=3,
                          device=torch.device("cpu"))
    assert out.posteriors is None and out.logits is None
    assert out.confidence.shape == (4,) and out.embeddings.shape == (4, model.embedding_dim)
    with torch.no_grad():
        ref = model(transform.test(images[torch.from_numpy(idx)]))
    want = torch.softmax(ref.logits, dim=1).max(dim=1).values.mean(dim=(1, 2))
    assert torch.allclose(out.confidence, want, atol=1e-6)
    assert torch.allclose(out.embeddings, ref.embedding, atol=1e-5)
    # Core-Set runs on those features: the first pick is the candidate farthest from the labeled one
    inputs = Inputs(candidates=Outputs(indices=idx[1:], embeddings=out.embeddings[1:]),
                    labeled=Outputs(indices=idx[:1], embeddings=out.embeddings[:1]), device=torch.device("cpu"))
    pool = PoolState(images=images, labeled=idx[:1], labeled_targets=torch.zeros(1, 8, 8, dtype=torch.uint8),
                     num_classes=3, task="segmentation")
    picked = make_strategy("coreset").select(cycle=1, budget=1, pool=pool, inputs=inputs,
                                             rng=np.random.default_rng(0))
    far = idx[1:][int(torch.cdist(out.embeddings[1:], out.embeddings[:1]).argmax())]
    assert picked.tolist() == [far]


def test_the_packaged_segmentation_configs_load():
    demo = load_config(Path("bench/configs/segmentation-demo.yaml").resolve())
    names = [s.name for s in demo.strategies]
    assert names == ["random", "least-confidence", "coreset", "pt4al"]
    assert demo.strategies[3].params["pretext_task"] == "colorization" and demo.model.name == "small-seg"
    assert get_dataset(demo.datasets[0].name).task == "segmentation"
