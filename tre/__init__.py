"""tre: a trusted research environment for cancer imaging."""

__version__ = "0.1.0"
