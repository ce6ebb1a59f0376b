"""Dead letters over HTTP and their redrive: listing and reading what the functions
rejected (shared/platform/deadletter.py writes it), and sending it through its
pipeline again once the cause is fixed (python -m tools.redrive)."""
