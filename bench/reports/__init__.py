"""Reports for paper authors (``albench report``) and checks against published numbers (``albench verify``).

Modules: :mod:`~albench.reports.data` (reading runs, finding missing ones), :mod:`~albench.reports.tables`
(pure table functions), :mod:`~albench.reports.stats` (AUBC, Wilcoxon, win/tie/loss),
:mod:`~albench.reports.figures` and :mod:`~albench.reports.tsne` (plots), :mod:`~albench.reports.provenance`
(the caption every artefact carries), :mod:`~albench.reports.output` (writers),
:mod:`~albench.reports.report` (the report) and :mod:`~albench.reports.verify` (the reference checks).
"""
