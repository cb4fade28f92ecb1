"""consultd: real-time consult rooms for physicians."""

__version__ = "0.1.0"
