"""One blueprint per capability. Each is a thin adapter over :mod:`shared`, which it
imports inside the functions so that indexing the app stays light."""
