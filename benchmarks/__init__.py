"""Benchmarks (pytest-benchmark): not collected by the default ``pytest`` run; see conftest.py."""
