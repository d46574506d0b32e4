"""The strategy contract as pytest tests, one per check and registered strategy (see :mod:`albench.testing`).

    python -m pytest --pyargs albench.testing                          # every registered strategy
    ALBENCH_STRATEGY=my-strategy python -m pytest --pyargs albench.testing   # just one

Another test module may run the same tests with ``from albench.testing.test_contract import *``.
"""

from __future__ import annotations

import pytest

from albench.testing import checks, fast_params, selected_strategies


def pytest_generate_tests(metafunc):
    """Parametrise every test taking ``strategy_name`` over the selected strategies (at collection, so a
    strategy registered before it is included)."""
    if "strategy_name" in metafunc.fixturenames:
        names = selected_strategies()
        metafunc.parametrize("strategy_name", names, ids=names)


@pytest.fixture
def contract_params(strategy_name):
    """The strategy's fast params (``fast_params``); the suite's pool is classification, so a strategy
    without that task is skipped, saying so."""
    from albench.strategies.registry import get_strategy

    tasks = get_strategy(strategy_name).tasks
    if "classification" not in tasks:
        pytest.skip(f"the contract suite runs on classification pools; {strategy_name!r} supports {sorted(tasks)}")
    return fast_params(strategy_name)


@pytest.fixture(autouse=True)
def contract_one_torch_thread():
    """One torch thread: the suite's networks are tiny, extra threads only add hand-offs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_same_rng_same_query(strategy_name, contract_params, tmp_path):
    checks.check_same_rng_same_query(strategy_name, contract_params, tmp_path)


def test_global_rng_untouched(strategy_name, contract_params, tmp_path):
    checks.check_global_rng_untouched(strategy_name, contract_params, tmp_path)


def test_queries_are_valid(strategy_name, contract_params, tmp_path):
    checks.check_queries_are_valid(strategy_name, contract_params, tmp_path)


def test_state_dict_round_trip(strategy_name, contract_params, tmp_path):
    checks.check_state_dict_round_trip(strategy_name, contract_params, tmp_path)


def test_unknown_param_refused(strategy_name, contract_params, tmp_path):
    checks.check_unknown_param_refused(strategy_name, contract_params, tmp_path)


def test_end_to_end(strategy_name, contract_params, tmp_path):
    checks.check_end_to_end(strategy_name, contract_params, tmp_path)


__all__ = ["contract_one_torch_thread", "contract_params", "pytest_generate_tests", "test_end_to_end",
           "test_global_rng_untouched", "test_queries_are_valid", "test_same_rng_same_query",
           "test_state_dict_round_trip", "test_unknown_param_refused"]
