"""albench: a benchmark harness for deep active learning in computer vision.

Everything installs under this one import namespace, so that a user's own ``models`` or ``strategies``
package never shadows ours. The repository keeps its folders and setuptools maps them: ``bench/`` is
``albench`` (config, data, engine, runner, records, reports, CLI, and the strategy contract suite
``albench.testing``), ``strategies/`` is ``albench.strategies`` and ``models/`` is ``albench.models``.
"""

__version__ = "0.1.0"
