"""restore: train, evaluate and use the MAXIM image-restoration family."""

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent


def _conf_dir() -> Path:
    """The Hydra configs: inside the package when installed from a wheel (pyproject.toml ships the
    repository's conf/ as ``restore/conf``), else conf/ beside the package in a source checkout,
    which an editable install uses as it is."""
    candidates = (_PACKAGE / "conf", _PACKAGE.parent / "conf")
    return next((path for path in candidates if path.is_dir()), candidates[0])


# Absolute, so the configs are found however and from wherever a command is run.
CONF_DIR = _conf_dir()
