"""What a study leaves for people: the Pareto front (``pareto.csv``), ``summary.json`` and
``report.md`` (``summary``), the plots (PNG + offline HTML) and a multirun's sweep summary.

Plain functions over rows (one dict per trial, keys from ``core.names``); below ``search/``,
which calls them, and above ``core/`` only.
"""
