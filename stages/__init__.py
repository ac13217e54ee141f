"""Thin DVC stage entries: `python -m stages.<name>`; all logic lives in `pipeline`."""
