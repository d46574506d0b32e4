"""A fixed small sweep (every built-in strategy, digits, seed 0) records the same queried indices and
metrics as the committed golden file, generated from main before the engine/params refactor.

A change that is meant to alter these numbers regenerates the file with
``python -m tests.golden.make_golden`` and says why in its commit. The numbers are exact on one kind
of CPU only; another kind has its own file (``make_golden --machine``, see its docstring).
"""

from __future__ import annotations

import json

import pytest

from tests.golden.make_golden import expected_file, run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    try:
        return run_sweep(str(tmp_path_factory.mktemp("golden")))
    finally:
        torch.set_num_threads(before)


EXPECTED_RECORDS = json.loads(expected_file().read_text())  # this machine kind's (see make_golden)


def test_golden_covers_every_run(records):
    assert sorted(records) == sorted(EXPECTED_RECORDS)


@pytest.mark.parametrize("label", sorted(EXPECTED_RECORDS))
def test_same_queries_and_metrics_as_golden(records, label):
    got, want = records[label], EXPECTED_RECORDS[label]
    assert got["queries"] == want["queries"], f"{label}: queried indices differ from the golden file"
    for g, w in zip(got["cycles"], want["cycles"], strict=True):
        assert (g["n_labeled"], g["epochs"], g["selected_epoch"]) == (w["n_labeled"], w["epochs"],
                                                                        w["selected_epoch"])
        # same CPU, same torch: equal up to float32 summation noise across kernels of one machine kind
        assert g["value"] == pytest.approx(w["value"], rel=1e-6, abs=1e-9)
        assert g["test_loss"] == pytest.approx(w["test_loss"], rel=1e-5)
