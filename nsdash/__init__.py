"""nsdash: run and watch OS containers."""

__version__ = "0.1.0"
