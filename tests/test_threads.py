"""Every library's thread pool runs at the run's ``threads`` (torch, each BLAS and OpenMP runtime through
threadpoolctl), and env.json records what was set."""

from __future__ import annotations

import json

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from albench.config import build_config
from albench.engine.loop import execute_run
from albench.plan import make_plan


@pytest.fixture
def restore_pools():
    """Put torch's and every runtime's thread counts back as they were after the test."""
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # leaving the block restores each runtime's original count
        yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_sets_and_records_every_thread_pool(tiny_raw, restore_pools, threads):
    tiny_raw["threads"] = threads
    tiny_raw["al"]["cycles"] = 1
    rc = make_plan(build_config(tiny_raw))[0]
    assert execute_run(rc).state == "complete"
    env = json.loads((rc.run_dir / "env.json").read_text())
    assert env["threads"] == threads
    pools = env["thread_pools"]
    apis = {p["user_api"] for p in pools}
    assert {"torch", "blas", "openmp"} <= apis, apis
    # every runtime scikit-learn's k-means (TypiClust, ProbCover) and scipy bring is among them, set too
    import scipy.linalg  # noqa: F401
    from sklearn.cluster import MiniBatchKMeans  # noqa: F401

    assert {p["filepath"] for p in threadpool_info()} <= {p["filepath"] for p in pools}
    assert all(p["num_threads"] == threads for p in pools), pools
    # what the process runs at now, not only what was recorded
    assert torch.get_num_threads() == threads
    assert all(p["num_threads"] == threads for p in threadpool_info())
