"""One blueprint per capability. Each is a thin adapter over :mod:`shared`, which it
imports inside the functions so that indexing the app stays light.

A batch parameter is annotated ``typing.List[func.EventHubEvent]``, never
``list[...]``: the Python worker (classic 4.x and azure-functions-runtime 1.3.0)
accepts only ``typing`` generics on a binding parameter and refuses a PEP 585
``list[...]`` as an "invalid non-type annotation", and one refused function fails the
indexing of the whole app (Azure/azure-functions-python-worker#1034). Ruff's UP006
is switched off for this package alone (pyproject.toml);
``tests/test_worker.py`` loads every function through the worker's own code.
"""
