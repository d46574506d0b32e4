"""Our own test run includes the public contract suite (:mod:`albench.testing`) for every
registered strategy: the same tests ``python -m pytest --pyargs albench.testing`` runs."""

from albench.testing.test_contract import *  # noqa: F401,F403  (tests, fixtures, pytest_generate_tests)
