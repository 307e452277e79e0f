"""restore: train, evaluate and use the MAXIM image-restoration family."""

__version__ = "0.1.0"
