"""albench: a benchmark harness for deep active learning in computer vision.

The harness core lives here (config, data, engine, runner, records, reports, CLI); strategies live in
the top-level ``strategies`` package and networks in ``models``.
"""

__version__ = "0.1.0"
