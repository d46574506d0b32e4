"""``select`` time and peak extra memory of learning-loss and vaal on synthetic pools of 10k and 50k.

Inputs come from :func:`benchmarks.conftest.make_case` (1,000 labeled, budget 1,000, CPU). Run::

    nice -n 10 python -m pytest benchmarks/test_select_ll_vaal.py -q

What is measured:

- ``learning-loss``: its ``select`` is the top-K of the predicted losses the engine computed
  (``inputs.candidates.aux``, random here); the module's training is part of the main model's
  training and its scoring part of the engine's inference pass, so neither is in ``select``.
  Timed with ``subset: null`` (every unlabeled image a candidate, so the pool size matters) and
  with the default ``subset: 10000`` (the official protocol: 10k candidates at either size).
- ``vaal``: its ``select`` trains a fresh VAE and discriminator and scores every unlabeled image,
  all of it timed. Images are random uint8 3x32x32 (CIFAR-sized); the VAE is the official
  network at a quarter of its width (``width: 32``, channels 32-256 instead of 128-1024, about
  1/10 of the compute per image), trained for ``iterations: 5`` (each 2 VAE steps on a labeled and
  an unlabeled batch of 128 and 1 discriminator step), scored in batches of 512. The official run
  is ``width: 128`` and 39,062 iterations per query on CIFAR-10: far beyond a CPU benchmark;
  ``extra_info`` records the cost split (training vs scoring) so it can be scaled.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

POOLS = [10_000, 50_000]
BUDGET = 1000
VAAL_PARAMS = {"iterations": 5, "width": 32, "batch_size": 128}
IMAGE_SHAPE = (3, 32, 32)

# case id: (strategy, params, rounds, make_case keywords)
CASES = {
    "learning-loss-all": ("learning-loss", {"subset": None}, 20, {}),
    "learning-loss-subset10k": ("learning-loss", {}, 20, {}),
    "vaal": ("vaal", VAAL_PARAMS, 1, {"image_shape": IMAGE_SHAPE}),
}


@pytest.mark.parametrize("pool_size", POOLS, ids=lambda n: f"pool{n // 1000}k")
@pytest.mark.parametrize("case_id", list(CASES))
def test_select(benchmark, select_case, peak_memory, case_id, pool_size):
    name, params, rounds, kw = CASES[case_id]
    case = select_case(name, params, pool_size, budget=BUDGET, **kw)
    benchmark.group = f"pool {pool_size // 1000}k"
    benchmark.extra_info.update(strategy=name, params=params, case=case_id, **case.info())
    picked = benchmark.pedantic(case.run, rounds=rounds, iterations=1)
    assert len(set(picked.tolist())) == BUDGET  # a valid query, not just a fast one
    assert not np.isin(picked, case.pool.labeled).any()

    if name == "vaal":
        # the split between training and scoring, measured once outside the timed rounds
        s = case.strategy
        rng = np.random.default_rng(case.seed)
        t0 = time.perf_counter()
        vae, disc = s.train_networks(case.pool, case.inputs.device, rng)
        t1 = time.perf_counter()
        s.score(vae, disc, case.pool.images, case.inputs.candidates.indices, case.inputs.device)
        t2 = time.perf_counter()
        benchmark.extra_info.update(image_shape=list(IMAGE_SHAPE), train_s=round(t1 - t0, 3),
                                    score_s=round(t2 - t1, 3),
                                    train_iterations=s.num_iterations(case.pool.size))
    benchmark.extra_info.update(peak_memory(name, params, pool_size, budget=BUDGET, **kw))
