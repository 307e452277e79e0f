"""restore: train, evaluate and use the MAXIM image-restoration family."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra configs; absolute, so they are found however a module is run.
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
