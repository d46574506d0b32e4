"""Reports for paper authors (``albench report``) and checks against published numbers (``albench verify``).

Modules: :mod:`~bench.reports.data` (reading runs, finding missing ones), :mod:`~bench.reports.tables`
(pure table functions), :mod:`~bench.reports.stats` (AUBC, Wilcoxon, win/tie/loss),
:mod:`~bench.reports.figures` and :mod:`~bench.reports.tsne` (plots), :mod:`~bench.reports.provenance`
(the caption every artefact carries), :mod:`~bench.reports.output` (writers),
:mod:`~bench.reports.report` (the report) and :mod:`~bench.reports.verify` (the reference checks).
"""
